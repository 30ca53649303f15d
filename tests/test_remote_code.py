"""The promise of the mission: a saved checkpoint loads, with the same numbers, where the package is not installed.

Each load runs in a fresh interpreter that blocks `import custom_transformer`, has its own HF_HOME (the
dynamic-module cache) and runs from another directory (`helpers/checkpoint_contract.py`). The same loads run
under the project env's transformers and under the oldest release the checkpoint code supports (a cached
release site, see `helpers/transformers_releases.py`).
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import transformers
from helpers.contract_checkpoints import run_contract
from helpers.models import PRESET_NAMES, heads_for, inputs_for, outputs_of, tiny_config
from helpers.transformers_releases import python_env, release_site

import custom_transformer
from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION

# The floor always; more releases on request, e.g. CT_EXTRA_TRANSFORMERS_VERSIONS=5.5.4,5.10.4,5.16.1
OLDER_TRANSFORMERS = [
    MIN_TRANSFORMERS_VERSION,
    *filter(None, os.environ.get("CT_EXTRA_TRANSFORMERS_VERSIONS", "").split(",")),
]


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory) -> Path:
    """One checkpoint per (preset, head), plus the outputs each model gave before saving."""
    root = tmp_path_factory.mktemp("checkpoints")
    cases = {"checkpoints": {}}
    for preset in PRESET_NAMES:
        heads, inputs = heads_for(preset), inputs_for(preset)
        for auto_name, model_class in heads.items():
            torch.manual_seed(0)
            model = model_class(tiny_config(preset, num_labels=3)).eval()
            folder = root / f"{preset}-{auto_name}"
            model.save_pretrained(folder)
            with torch.no_grad():
                expected = outputs_of(model, **inputs)
            # The first head's checkpoint is also loaded under every other applicable Auto class.
            auto_classes = list(heads) if auto_name == "AutoModel" else [auto_name]
            cases["checkpoints"][folder.name] = {
                "folder": str(folder),
                "auto_classes": auto_classes,
                "compare_with": auto_name,
                "inputs": inputs,
                "expected": expected,
            }
    cases["refuse_without_trust"] = str(root / "llama-AutoModel")
    torch.save(cases, root / "cases.pt")
    return root


def load_in_fresh_process(version: str | None, checkpoints: Path, tmp_path: Path) -> dict:
    """Run the checkpoint contract under `version` (None: the project env's transformers)."""
    site = None if version is None else release_site(version)
    return run_contract(checkpoints / "cases.pt", tmp_path, python_env(site, hf_home=tmp_path / "hf-home"))


def assert_every_head_loads_with_the_same_outputs(results: dict):
    loads = results["loads"]
    # Per preset: the AutoModel checkpoint under each of its heads' Auto classes, the other heads' once each.
    assert len(loads) == sum(2 * len(heads_for(preset)) - 1 for preset in PRESET_NAMES)
    for key, entry in loads.items():
        assert "error" not in entry, f"{key}: {entry['error']}"
        assert entry["module"].startswith("transformers_modules."), key  # the checkpoint's copy of the code
        if "max_abs_diff" in entry:
            assert entry["max_abs_diff"] < 1e-5, key


def test_every_head_loads_with_trust_remote_code_where_the_package_is_missing(saved_checkpoints, tmp_path):
    results = load_in_fresh_process(None, saved_checkpoints, tmp_path)
    assert results["transformers_version"] == transformers.__version__
    assert_every_head_loads_with_the_same_outputs(results)
    assert "trust_remote_code=True" in results["without_trust"]


@pytest.mark.index
@pytest.mark.parametrize("version", OLDER_TRANSFORMERS)
def test_checkpoint_code_runs_under_the_oldest_supported_transformers(saved_checkpoints, tmp_path, version):
    results = load_in_fresh_process(version, saved_checkpoints, tmp_path)
    assert results["transformers_version"] == version
    assert_every_head_loads_with_the_same_outputs(results)


def test_checkpoint_code_under_transformers_4_fails_at_once_naming_the_version_needed(monkeypatch):
    monkeypatch.setattr(transformers, "__version__", "4.57.6")
    compat_file = Path(custom_transformer.__file__).parent / "transformers_compat.py"
    spec = importlib.util.spec_from_file_location("checkpoint_transformers_compat", compat_file)
    with pytest.raises(ImportError, match=r"need transformers>=5\.0\.0, but transformers 4\.57\.6 is installed"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.mark.parametrize(
    ("preset", "auto_name"), [("llama", "AutoModelForSequenceClassification"), ("vaswani", "AutoModel")]
)
def test_the_package_registers_every_head_so_no_remote_code_is_needed_when_installed(tmp_path, preset, auto_name):
    """AutoModel has a bare model per stack (one stack, or an encoder-decoder): the one that fits is loaded."""
    head = heads_for(preset)[auto_name]
    head(tiny_config(preset)).save_pretrained(tmp_path)
    loaded = getattr(transformers, auto_name).from_pretrained(tmp_path, trust_remote_code=False)
    assert type(loaded) is head
