"""The promise of the mission: a saved checkpoint loads, with the same numbers, where the package is not installed.

Each load runs in a fresh interpreter that blocks `import custom_transformer`, has its own HF_HOME (the
dynamic-module cache) and runs from another directory. The same loads run under the newest transformers
(this environment) and under the oldest release the checkpoint code supports (a cached second venv).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from conftest import tiny_config
from test_modeling import heads_for, make_inputs, outputs_of

import custom_transformer
from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION

LOADER = Path(__file__).parent / "helpers" / "load_without_package.py"
VENV_CACHE = Path(os.environ.get("CT_VENV_CACHE", Path.home() / ".cache" / "custom_transformer" / "venvs"))
TORCH_SPEC = os.environ.get("CT_TORCH_SPEC", "torch==2.13.0")
# The floor always; more releases on request, e.g. CT_EXTRA_TRANSFORMERS_VERSIONS=5.5.4,5.10.4,5.16.1
OLDER_TRANSFORMERS = [
    MIN_TRANSFORMERS_VERSION,
    *filter(None, os.environ.get("CT_EXTRA_TRANSFORMERS_VERSIONS", "").split(",")),
]


def python_with_transformers(version: str) -> Path:
    """A venv with only torch and transformers==version, built once and kept in VENV_CACHE."""
    venv = VENV_CACHE / f"transformers-{version}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, TORCH_SPEC], check=True)
    subprocess.run([*pip, TORCH_SPEC, f"transformers=={version}"], check=True)
    (building / ".complete").touch()
    building.rename(venv)  # appears complete or not at all
    return python


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory) -> Path:
    """One checkpoint per (preset, head), plus the outputs each model gave before saving."""
    root = tmp_path_factory.mktemp("checkpoints")
    input_ids, attention_mask = make_inputs()
    cases = {"inputs": {"input_ids": input_ids, "attention_mask": attention_mask}, "checkpoints": {}}
    for preset in ("llama", "gpt2", "bert", "vaswani"):
        heads = heads_for(preset)
        for auto_name, model_class in heads.items():
            torch.manual_seed(0)
            model = model_class(tiny_config(preset, num_labels=3)).eval()
            folder = root / f"{preset}-{auto_name}"
            model.save_pretrained(folder)
            with torch.no_grad():
                expected = outputs_of(model, input_ids=input_ids, attention_mask=attention_mask)
            # The first head's checkpoint is also loaded under every other applicable Auto class.
            auto_classes = list(heads) if auto_name == "AutoModel" else [auto_name]
            cases["checkpoints"][str(folder)] = {
                "auto_classes": auto_classes,
                "compare_with": auto_name,
                "expected": expected,
            }
    cases["refuse_without_trust"] = str(root / "llama-AutoModel")
    torch.save(cases, root / "cases.pt")
    return root


def load_in_fresh_process(python: Path, checkpoints: Path, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HOME", "HF_MODULES_CACHE")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1")
    result = tmp_path / "result.json"
    proc = subprocess.run(
        [str(python), str(LOADER), str(checkpoints / "cases.pt"), str(result)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(result.read_text())


def assert_every_head_loads_with_the_same_outputs(results: dict):
    loads = results["loads"]
    assert len(loads) == 4 * 5 + 4 * 4  # per preset: the AutoModel checkpoint under its 5 heads, 4 others once
    for key, entry in loads.items():
        assert "error" not in entry, f"{key}: {entry['error']}"
        assert entry["module"].startswith("transformers_modules."), key  # the checkpoint's copy of the code
        if "max_abs_diff" in entry:
            assert entry["max_abs_diff"] < 1e-5, key


def test_every_head_loads_with_trust_remote_code_where_the_package_is_missing(saved_checkpoints, tmp_path):
    results = load_in_fresh_process(Path(sys.executable), saved_checkpoints, tmp_path)
    assert results["transformers_version"] == transformers.__version__
    assert_every_head_loads_with_the_same_outputs(results)
    assert "trust_remote_code=True" in results["without_trust"]


@pytest.mark.parametrize("version", OLDER_TRANSFORMERS)
def test_checkpoint_code_runs_under_the_oldest_supported_transformers(saved_checkpoints, tmp_path, version):
    python = python_with_transformers(version)
    results = load_in_fresh_process(python, saved_checkpoints, tmp_path)
    assert results["transformers_version"] == version
    assert_every_head_loads_with_the_same_outputs(results)


def test_checkpoint_code_under_transformers_4_fails_at_once_naming_the_version_needed(monkeypatch):
    monkeypatch.setattr(transformers, "__version__", "4.57.6")
    compat_file = Path(custom_transformer.__file__).parent / "transformers_compat.py"
    spec = importlib.util.spec_from_file_location("checkpoint_transformers_compat", compat_file)
    with pytest.raises(ImportError, match=r"need transformers>=5\.0\.0, but transformers 4\.57\.6 is installed"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_the_package_registers_every_head_so_no_remote_code_is_needed_when_installed(tmp_path):
    model = heads_for("llama")["AutoModelForSequenceClassification"](tiny_config("llama"))
    model.save_pretrained(tmp_path)
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=False)
    assert type(loaded).__module__ == "custom_transformer.modeling_custom_transformer"
