"""Canary: the code inside a saved checkpoint works under the project env, the floor and the newest release.

People load our checkpoints with `trust_remote_code=True` under whatever transformers 5.x they have. Here a
llama, a gpt2 and a no-preset decoder (causal LM), a bert (masked LM) and a 2017 Transformer (base model) are
saved once, then loaded in a fresh interpreter without the package (`helpers/checkpoint_contract.py`) under:

- the project env (this venv's transformers),
- the floor, `MIN_TRANSFORMERS_VERSION`, from a cached release site,
- the newest release on the package index, from a cached release site (an unreachable index fails the test:
  a canary that cannot see upstream must not pass).

Each must load every checkpoint with the same outputs (1e-5), generate the same greedy tokens on a left-padded
batch without a cache, with the dynamic cache and with a static one, and refuse to load without trust. The
project env and the newest release must also emit no deprecation warning. `make compat` runs the same contract
under every 5.x minor release.
"""

from pathlib import Path

import pytest
import transformers
from helpers.contract_checkpoints import contract_failures, run_contract, save_contract_checkpoints
from helpers.transformers_releases import newest_release, python_env, release_site

from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION

NEWEST, NO_INDEX = None, ""
try:
    NEWEST = newest_release()
except RuntimeError as error:  # no index: the newest release is unknown, its test is skipped
    NO_INDEX = str(error)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return save_contract_checkpoints(tmp_path_factory.mktemp("contract"))


def contract_under(version: str | None, cases: Path, workdir: Path) -> dict:
    """Run the contract under `version` (None: the project env) and check that this is what ran."""
    site = None if version is None else release_site(version)
    results = run_contract(cases, workdir, python_env(site, hf_home=workdir / "hf-home"))
    ran = results["transformers_version"]
    print(f"checkpoint contract ran under transformers {ran}")
    assert ran == (version or transformers.__version__)
    return results


@pytest.mark.parametrize("version", [transformers.__version__], ids=lambda v: f"project-env-{v}")
def test_contract_holds_in_the_project_env(cases, tmp_path, version):
    results = contract_under(None, cases, tmp_path)
    assert contract_failures(results, expect_no_deprecations=True) == []


@pytest.mark.parametrize("version", [MIN_TRANSFORMERS_VERSION], ids=lambda v: f"floor-{v}")
def test_contract_holds_under_the_oldest_supported_release(cases, tmp_path, version):
    results = contract_under(version, cases, tmp_path)
    assert contract_failures(results, expect_no_deprecations=False) == []


@pytest.mark.parametrize("version", [NEWEST], ids=lambda v: f"newest-{v or 'unknown'}")
def test_contract_holds_under_the_newest_release_without_deprecations(cases, tmp_path, version):
    assert version is not None, f"the canary cannot read the newest release from the package index: {NO_INDEX}"
    results = contract_under(version, cases, tmp_path)
    assert contract_failures(results, expect_no_deprecations=True) == []
