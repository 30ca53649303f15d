"""Released transformers versions, each installed once into its own folder, to run checkpoint code under.

A *release site* is a folder made by ``pip install --target <folder> transformers==<version>``: transformers
with its own dependencies (numpy, huggingface_hub, tokenizers, safetensors, ...), but not torch, which
transformers does not depend on. Put first on ``PYTHONPATH``, it makes this venv's python (and its torch)
run that release. Sites are cached under ``~/.cache/custom_transformer/transformers-sites/<version>``
(``CT_SITE_CACHE`` overrides the folder), built into a temporary sibling and renamed, so a site is complete
or absent. The release lists come from the package index, never from a list in this file.
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
from importlib import metadata
from pathlib import Path

from packaging.version import InvalidVersion, Version

SITE_CACHE = Path(os.environ.get("CT_SITE_CACHE", Path.home() / ".cache" / "custom_transformer" / "transformers-sites"))
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
INDEX_LIMITS = ["--timeout", "15", "--retries", "2"]  # an unreachable index fails in about a minute, not ten
# Written into a site last: which interpreter its compiled wheels (numpy, tokenizers, ...) were chosen for.
STAMP = "ct-site.json"


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


def release_site(version: str) -> Path:
    """A folder holding transformers==`version` and its dependencies, installed once and then reused."""
    site = SITE_CACHE / version
    if _site_is_usable(site, version):
        return site
    SITE_CACHE.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{version}.building-", dir=SITE_CACHE))
    try:
        proc = subprocess.run(
            [*PIP, "install", "-q", "--no-input", "--target", str(building), f"transformers=={version}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip could not install transformers=={version}:\n{proc.stderr[-3000:]}")
        (building / STAMP).write_text(json.dumps({"transformers": version, **_interpreter_stamp()}))
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
        _check_site(Path(site).resolve())
    return env


def release_env(version: str, hf_home: Path | None = None) -> dict:
    """`python_env` for running `version`: this venv's own transformers when it is that release, else its site."""
    return python_env(None if version == metadata.version("transformers") else release_site(version), hf_home)


@functools.cache
def _check_site(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HF_HUB_OFFLINE="1", HF_HOME=tempfile.mkdtemp(prefix="ct-hf-home-"))
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
