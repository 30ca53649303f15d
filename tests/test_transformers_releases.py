"""Canary: the code inside a saved checkpoint works under the project env, the floor and the newest release.

People load our checkpoints with `trust_remote_code=True` under whatever transformers 5.x they have. Here a
llama, a gpt2 and a no-preset decoder (causal LM), a bert (masked LM) and a 2017 Transformer (base model) are
saved once, then loaded in a fresh interpreter without the package (`helpers/checkpoint_contract.py`) under:

- the project env (this venv's transformers),
- the floor, `MIN_TRANSFORMERS_VERSION`, from a cached release site,
- the newest release on the package index, from a cached release site (an unreachable index fails the test:
  a canary that cannot see upstream must not pass). A release whose hard requirement the index lacks runs without
  it where the release allows that (5.25 without `kernels`, with USE_HUB_KERNELS=0), and is skipped with the
  reason where it does not (`helpers/transformers_releases.py`).

Each must load every checkpoint with the same outputs (1e-5), generate the same greedy tokens on a left-padded
batch without a cache, with the dynamic cache and with a static one, and refuse to load without trust. The
project env and the newest release must also emit no deprecation warning. `make compat` runs the same contract
under every 5.x minor release.
"""

import subprocess
from pathlib import Path

import pytest
import transformers
from helpers import transformers_releases as releases
from helpers.contract_checkpoints import contract_failures, run_contract, save_contract_checkpoints
from helpers.transformers_releases import NotInstallable, describe_left_out, newest_release, python_env, release_site
from packaging.requirements import Requirement

from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return save_contract_checkpoints(tmp_path_factory.mktemp("contract"))


def contract_under(version: str | None, cases: Path, workdir: Path) -> dict:
    """Run the contract under `version` (None: the project env) and check that this is what ran.

    A release the index cannot install whole runs without what it can do without (its log says what); one that
    cannot run at all is skipped, naming the requirement the index lacks.
    """
    try:
        site = None if version is None else release_site(version)
    except NotInstallable as reason:
        pytest.skip(str(reason))
    if describe_left_out(site):
        print(f"transformers {version}: {describe_left_out(site)}")
    results = run_contract(cases, workdir, python_env(site, hf_home=workdir / "hf-home"))
    ran = results["transformers_version"]
    print(f"checkpoint contract ran under transformers {ran}")
    assert ran == (version or transformers.__version__)
    return results


@pytest.mark.parametrize("version", [transformers.__version__], ids=lambda v: f"project-env-{v}")
def test_contract_holds_in_the_project_env(cases, tmp_path, version):
    results = contract_under(None, cases, tmp_path)
    assert contract_failures(results, expect_no_deprecations=True) == []


@pytest.mark.index
@pytest.mark.parametrize("version", [MIN_TRANSFORMERS_VERSION], ids=lambda v: f"floor-{v}")
def test_contract_holds_under_the_oldest_supported_release(cases, tmp_path, version):
    results = contract_under(version, cases, tmp_path)
    assert contract_failures(results, expect_no_deprecations=False) == []


@pytest.mark.index
def test_contract_holds_under_the_newest_release_without_deprecations(cases, tmp_path):
    version = newest_release()  # asked at run time, not at collection; an unreachable index fails the canary
    results = contract_under(version, cases, tmp_path)
    assert contract_failures(results, expect_no_deprecations=True) == []


def test_a_release_is_installed_without_a_requirement_it_runs_without_and_told_to_do_without(tmp_path, monkeypatch):
    installs = fake_index(monkeypatch, tmp_path, unmet=["kernels<0.20,>=0.19.1"])
    site = releases.release_site("5.99.0")
    assert installs[-2:] == [("transformers==5.99.0", True), ("numpy>=1.17", False)]  # all but kernels, no-deps
    assert releases.switches(site) == {"USE_HUB_KERNELS": "0"}
    assert describe_left_out(site) == (
        "installed without kernels<0.20,>=0.19.1 (not on the index), run with USE_HUB_KERNELS=0"
    )


def test_a_release_missing_a_requirement_it_cannot_run_without_is_not_installable_naming_it(tmp_path, monkeypatch):
    fake_index(monkeypatch, tmp_path, unmet=["tokenizers<0.30,>=0.29"])
    with pytest.raises(
        NotInstallable, match=r"transformers 5\.99\.0 needs tokenizers<0\.30,>=0\.29, which the package"
    ):
        releases.release_site("5.99.0")
    assert not (tmp_path / "5.99.0").exists()  # nothing half-built is left to be mistaken for a site


def fake_index(monkeypatch, cache: Path, unmet: list[str]) -> list:
    """An index on which transformers==5.99.0 requires numpy and `unmet`, which it cannot satisfy."""
    installs = []

    def pip_install(target, *requirements, no_deps=False):
        installs.extend((r, no_deps) for r in requirements)
        whole = requirements == ("transformers==5.99.0",) and not no_deps
        return subprocess.CompletedProcess([], 1 if whole else 0, "", "ResolutionImpossible" if whole else "")

    monkeypatch.setattr(releases, "SITE_CACHE", cache)
    monkeypatch.setattr(releases, "_pip_install", pip_install)
    monkeypatch.setattr(releases, "hard_requirements", lambda v: [Requirement("numpy>=1.17"), *map(Requirement, unmet)])
    monkeypatch.setattr(releases, "unmet_requirements", lambda v: list(map(Requirement, unmet)))
    return installs
