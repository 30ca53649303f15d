"""Released transformers versions, each installed once into its own folder, to run checkpoint code under.

A *release site* is a folder made by ``pip install --target <folder> transformers==<version>``: transformers
with its own dependencies (numpy, huggingface_hub, tokenizers, safetensors, ...), but not torch, which
transformers does not depend on. Put first on ``PYTHONPATH``, it makes this venv's python (and its torch)
run that release. Sites are cached under ``~/.cache/custom_transformer/transformers-sites/<version>``
(``CT_SITE_CACHE`` overrides the folder), built into a temporary sibling and renamed, so a site is complete
or absent. The release lists come from the package index, never from a list in this file.

A release whose hard requirement the index cannot satisfy (5.25 needs ``kernels>=0.19.1``; a mirror may serve
only 0.17) is installed without it when the release can run without it, switched off the way the release itself
allows (``RUNS_WITHOUT``), and its stamp records what was left out; any other unmet requirement makes the release
``NotInstallable``, which a test reports as a skip naming the requirement, never as a pass.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

SITE_CACHE = Path(os.environ.get("CT_SITE_CACHE", Path.home() / ".cache" / "custom_transformer" / "transformers-sites"))
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
INDEX_LIMITS = ["--timeout", "15", "--retries", "2"]  # an unreachable index fails in about a minute, not ten
# Written into a site last: which interpreter its compiled wheels (numpy, tokenizers, ...) were chosen for.
STAMP = "ct-site.json"
# Hard requirements a release still runs without, and the environment that tells the release to do without.
# kernels (5.25+): `from_pretrained` defaults to `use_kernels=True` and raises "Kernels are not available" unless
# USE_HUB_KERNELS is false; 5.0 - 5.24 read the same variable.
RUNS_WITHOUT = {"kernels": {"USE_HUB_KERNELS": "0"}}


class NotInstallable(RuntimeError):
    """The index cannot satisfy a hard requirement of the release, and the release cannot run without it."""


# --- the index --------------------------------------------------------------------------------------------------


@functools.cache
def released_versions(package: str = "transformers") -> tuple[Version, ...]:
    """Every final release of `package` on the index, oldest first (pre-releases and unparsable tags dropped)."""
    query = [*PIP, *INDEX_LIMITS, "index", "versions", package]
    proc = subprocess.run([*query, "--json"], capture_output=True, text=True)
    if proc.returncode != 0 and "--json" in proc.stderr:  # an older pip: "Available versions: 5.24.0, 5.23.0, ..."
        proc = subprocess.run(query, capture_output=True, text=True)
        found = re.search(r"^Available versions:(.*)$", proc.stdout, flags=re.MULTILINE)
        names = found.group(1).split(",") if proc.returncode == 0 and found else None
    else:
        names = json.loads(proc.stdout)["versions"] if proc.returncode == 0 else None
    if names is None:
        raise RuntimeError(f"cannot read the versions of {package} from the index:\n{proc.stderr[-2000:]}")
    versions = set()
    for name in names:
        try:
            parsed = Version(name.strip())
        except InvalidVersion:
            continue
        if not parsed.is_prerelease:
            versions.add(parsed)
    if not versions:
        raise RuntimeError(f"the index lists no final release of {package}")
    return tuple(sorted(versions))


def newest_release() -> str:
    """The newest final transformers release on the index."""
    return str(released_versions()[-1])


def latest_patch_of_each_minor(major: int = 5, floor: str = "5.0.0") -> list[str]:
    """The newest patch of every `major`.minor release from `floor` on, oldest first: 5.0.0, 5.1.0, ..., 5.5.4, ..."""
    newest_by_minor: dict[int, Version] = {}
    for release in released_versions():
        if release.major == major and release >= Version(floor):
            newest_by_minor[release.minor] = max(release, newest_by_minor.get(release.minor, release))
    return [str(newest_by_minor[minor]) for minor in sorted(newest_by_minor)]


# --- release sites ----------------------------------------------------------------------------------------------


def _interpreter_stamp() -> dict:
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "machine": platform.machine(),
    }


def _site_is_usable(site: Path, version: str) -> bool:
    stamp = site / STAMP
    if not stamp.is_file():
        return False
    recorded = json.loads(stamp.read_text())
    same_minor = recorded.get("python", "").rsplit(".", 1)[0] == platform.python_version().rsplit(".", 1)[0]
    return recorded.get("transformers") == version and same_minor


def _pip_install(target: Path, *requirements: str, no_deps: bool = False) -> subprocess.CompletedProcess:
    command = [*PIP, "install", "-q", "--no-input", "--target", str(target), *(["--no-deps"] if no_deps else [])]
    return subprocess.run([*command, *requirements], stdin=subprocess.DEVNULL, capture_output=True, text=True)


def hard_requirements(version: str) -> list[Requirement]:
    """What transformers==`version` requires whatever the extras, read from its wheel's metadata."""
    with tempfile.TemporaryDirectory() as download:
        proc = subprocess.run(
            [*PIP, "download", "-q", "--no-deps", "--only-binary", ":all:", f"transformers=={version}", "-d", download],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip could not download transformers=={version}:\n{proc.stderr[-3000:]}")
        (wheel,) = Path(download).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
            fields = Parser().parsestr(archive.read(name).decode())
    requirements = [Requirement(line) for line in fields.get_all("Requires-Dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def unmet_requirements(version: str) -> list[Requirement]:
    """The hard requirements of transformers==`version` that no final release on the index satisfies."""
    return [
        r for r in hard_requirements(version) if not any(r.specifier.contains(v) for v in released_versions(r.name))
    ]


def release_site(version: str) -> Path:
    """A folder holding transformers==`version` and its dependencies, installed once and then reused.

    A hard requirement the index lacks is left out when the release runs without it (`RUNS_WITHOUT`); the
    stamp records it, and `python_env` switches the feature off. `NotInstallable` otherwise.
    """
    site = SITE_CACHE / version
    if _site_is_usable(site, version):
        return site
    SITE_CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{version}.building-", dir=SITE_CACHE))
    try:
        left_out = {}
        proc = _pip_install(building, f"transformers=={version}")
        if proc.returncode != 0:
            unmet = unmet_requirements(version)
            if not unmet:
                raise RuntimeError(f"pip could not install transformers=={version}:\n{proc.stderr[-3000:]}")
            blocking = [str(r) for r in unmet if r.name not in RUNS_WITHOUT]
            if blocking:
                raise NotInstallable(
                    f"transformers {version} needs {', '.join(blocking)}, which the package index does not have, "
                    "and cannot run without it"
                )
            left_out = {str(r): RUNS_WITHOUT[r.name] for r in unmet}
            shutil.rmtree(building)
            building.mkdir()
            wanted = [str(r) for r in hard_requirements(version) if str(r) not in left_out]
            for step in (
                _pip_install(building, f"transformers=={version}", no_deps=True),
                _pip_install(building, *wanted),
            ):
                if step.returncode != 0:
                    raise RuntimeError(
                        f"pip could not install transformers=={version} without {', '.join(left_out)}:\n{step.stderr[-3000:]}"
                    )
        (building / STAMP).write_text(
            json.dumps({"transformers": version, "left_out": left_out, **_interpreter_stamp()})
        )
        if site.exists():  # a site built for another interpreter: replace it
            shutil.rmtree(site)
        try:
            building.rename(site)  # the site appears complete or not at all
        except OSError:  # another process finished the same site first: use theirs
            if not _site_is_usable(site, version):
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return site


def left_out(site: Path | None) -> dict[str, dict[str, str]]:
    """The requirements a site was installed without, each with the environment that switches its feature off."""
    return {} if site is None else json.loads((Path(site) / STAMP).read_text()).get("left_out", {})


def switches(site: Path | None) -> dict[str, str]:
    """The environment a site needs to run without what it was installed without."""
    return {name: value for env in left_out(site).values() for name, value in env.items()}


def describe_left_out(site: Path | None) -> str:
    """One line for a test log or a matrix: what was left out and how it was switched off, or ''."""
    return "; ".join(
        f"installed without {requirement} (not on the index), run with "
        + " ".join(f"{name}={value}" for name, value in env.items())
        for requirement, env in left_out(site).items()
    )


# Run with a site first on the path: the release must be the site's, and the site's compiled dependencies
# must work next to this venv's torch (tensors to and from numpy, safetensors, a tokenizer, the hub client).
_CHECK_SITE = """
import json, sys
import numpy, torch, transformers, huggingface_hub, tokenizers, safetensors.torch
from tokenizers import Tokenizer, models
from transformers import modeling_utils  # imports transformers' torch integration

array = torch.arange(6, dtype=torch.float32).reshape(2, 3).numpy()
assert torch.from_numpy(array * 2).sum().item() == 30.0
assert safetensors.torch.load(safetensors.torch.save({"w": torch.ones(2)}))["w"].sum().item() == 2.0
tokenizer = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
assert tokenizer.encode("a").ids == [0]
assert huggingface_hub.constants.HF_HUB_OFFLINE
print(json.dumps({name: (module.__version__, module.__file__) for name, module in
                  {"transformers": transformers, "numpy": numpy, "huggingface_hub": huggingface_hub,
                   "tokenizers": tokenizers, "torch": torch}.items()}))
"""


def python_env(site: Path | None, hf_home: Path | None = None) -> dict:
    """Environment for running this venv's python under the release in `site` (None: the venv's own release).

    Offline, with a private HF_HOME (so the dynamic-module cache starts empty). A site is checked once per
    process: its transformers must be the one imported, and its dependencies must work with the venv's torch.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME", "HF_MODULES_CACHE")}
    env.update(
        HF_HOME=str(hf_home or tempfile.mkdtemp(prefix="ct-hf-home-")),
        HF_HUB_OFFLINE="1",
        PYTHONNOUSERSITE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    if site is not None:
        env["PYTHONPATH"] = str(site)
        env.update(switches(site))
        _check_site(Path(site).resolve())
    return env


def index_marks(version: str) -> tuple:
    """pytest marks for a test run under `version`: from a release site, installed from the package index on first
    use, it needs the index (`pytest -m "not index"` runs the suite offline)."""
    import pytest

    return () if version == metadata.version("transformers") else (pytest.mark.index,)


def release_env(version: str, hf_home: Path | None = None) -> dict:
    """`python_env` for running `version`: this venv's own transformers when it is that release, else its site."""
    return python_env(None if version == metadata.version("transformers") else release_site(version), hf_home)


@functools.cache
def _check_site(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYTHONPATH=str(site), HF_HUB_OFFLINE="1", HF_HOME=tempfile.mkdtemp(prefix="ct-hf-home-"), **switches(site)
    )
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK_SITE], env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the release site {site} does not work with {sys.executable}:\n{proc.stderr[-3000:]}")
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = json.loads((site / STAMP).read_text())["transformers"]
    if modules["transformers"][0] != expected:
        raise RuntimeError(f"{site} should run transformers {expected}, but {modules['transformers']} was imported")
    for name in ("transformers", "numpy", "huggingface_hub", "tokenizers"):
        if not Path(modules[name][1]).resolve().is_relative_to(site):
            raise RuntimeError(f"{name} was imported from {modules[name][1]}, not from the release site {site}")
    return modules


def site_size_bytes(site: Path) -> int:
    return sum(path.stat().st_size for path in Path(site).rglob("*") if path.is_file() and not path.is_symlink())
