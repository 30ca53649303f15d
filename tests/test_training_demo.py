"""The README's main job, `python -m training.demo`, in its quick form: every stage wired, results written."""

from pathlib import Path

import pytest
from helpers.training_data import read_json

from training import data, demo


def test_the_quick_demo_runs_every_stage_and_reloads_the_models_without_the_package(tmp_path, monkeypatch):
    try:
        data.fortune_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    monkeypatch.chdir(tmp_path)  # outputs land in tmp_path, and run_info paths are relative to it
    results = demo.main(["--quick", "true", "--output_dir", "outputs/demo"])

    out = tmp_path / "outputs" / "demo"
    assert read_json(out / "results.json") == results
    assert set(results["classifier"]["baselines"]) == {"majority_class", "tfidf_logreg"}
    assert results["classifier"]["metrics"]["num_rows"] == results["classifier"]["dataset"]["split_sizes"]["test"]
    classifier = read_json(out / "classifier" / "run_info.json")
    assert classifier["base_model"] == "outputs/demo/pretrain"
    assert classifier["dataset"]["license"] == "BSD-3-Clause"
    assert classifier["dataset"]["files"][0] == "outputs/demo/data/classification/train.jsonl"
    assert read_json(out / "pretrain" / "run_info.json")["task"] == "text-generation"
    reload = (out / "reload.txt").read_text()
    assert "custom_transformer was never imported" in reload
    assert all(Path(p).is_absolute() is False for p in classifier["dataset"]["files"])
