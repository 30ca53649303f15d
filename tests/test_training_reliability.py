"""Faults a user meets with the training scripts: each is refused before any training step with a one-line error
that names the problem and the fix, and nothing already saved is touched."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.training_data import FAST, TINY_MODEL, make_workspace, read_json, write_jsonl

from training import common, finetune, pretrain
from training.common import DataError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("reliability"))


@pytest.fixture(scope="module")
def classifier(workspace, tmp_path_factory) -> Path:
    """A cat/dog classifier fine-tuned for one epoch: a finished run that later runs must not damage."""
    out = tmp_path_factory.mktemp("classifier")
    finetune.main(finetune_argv(workspace, out, "--num_train_epochs", "1"))
    return out


def finetune_argv(workspace, output_dir, *extra, data=None) -> list[str]:
    data = data or workspace["classification"]
    return [
        "--model_name_or_path", workspace["checkpoint"], "--train_files", data["train"],
        "--validation_files", data["validation"], "--output_dir", str(output_dir), "--do_train",
        "--per_device_train_batch_size", "32", *FAST, *extra,
    ]  # fmt: skip


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_an_output_dir_holding_another_run_is_refused_and_left_as_it_was(workspace, classifier):
    before = fingerprint(classifier)
    with pytest.raises(DataError, match=r"already holds a text-classification run .*--overwrite_output_dir"):
        finetune.main(finetune_argv(workspace, classifier))
    lm_argv = [
        "--tokenizer_name_or_path", workspace["tokenizer"], "--preset", "llama", "--config_overrides", TINY_MODEL,
        "--train_files", workspace["text"]["train"], "--block_size", "16", "--output_dir", str(classifier),
        "--max_steps", "1", "--do_train", *FAST,
    ]  # fmt: skip
    with pytest.raises(DataError, match=r"already holds a text-classification run"):
        pretrain.main(lm_argv)
    assert fingerprint(classifier) == before


def test_overwrite_output_dir_replaces_the_earlier_run(workspace, classifier, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(classifier, copy)
    finetune.main(finetune_argv(workspace, copy, "--num_train_epochs", "1", "--overwrite_output_dir"))
    assert read_json(copy / "run_info.json")["task"] == "text-classification"


def test_max_steps_zero_is_refused_instead_of_training_one_step(workspace, tmp_path):
    with pytest.raises(DataError, match=r"--max_steps 0 trains nothing"):
        finetune.main(finetune_argv(workspace, tmp_path / "out", "--max_steps", "0"))
    assert not (tmp_path / "out").exists()


def test_a_data_file_that_is_not_utf8_names_the_file_line_and_byte(workspace, tmp_path):
    latin1 = tmp_path / "train.jsonl"
    rows = [{"text": "The cat sat.", "label": "cat"}, {"text": "Le chien a mangé.", "label": "dog"}] * 8
    latin1.write_bytes("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("latin-1"))
    data = {"train": str(latin1), "validation": workspace["classification"]["validation"]}
    with pytest.raises(DataError, match=r"train file .*train.jsonl is not UTF-8: line 2 has byte 0xe9 .*iconv"):
        finetune.main(finetune_argv(workspace, tmp_path / "out", data=data))


def test_a_checkpoint_without_its_tokenizer_asks_for_one(workspace, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(workspace["checkpoint"]) / name, bare)
    argv = finetune_argv(workspace, tmp_path / "out")
    argv[argv.index("--model_name_or_path") + 1] = str(bare)
    with pytest.raises(DataError, match=r"holds no tokenizer .*--tokenizer_name_or_path"):
        finetune.main(argv)
    finetune.main([*argv, "--tokenizer_name_or_path", workspace["tokenizer"], "--num_train_epochs", "1"])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_weights_are_named_with_the_fix(workspace, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(workspace["checkpoint"], broken)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x00" * 64)
    argv = finetune_argv(workspace, tmp_path / "out")
    argv[argv.index("--model_name_or_path") + 1] = str(broken)
    with pytest.raises(
        DataError, match=r"broken/model.safetensors is truncated or corrupt .*copy the checkpoint again"
    ):
        finetune.main(argv)


def test_a_classifier_fine_tuned_on_other_labels_needs_the_flag_that_replaces_its_head(workspace, classifier, tmp_path):
    rows = [{"text": text, "label": label} for text, label in (("A red cat.", "red"), ("A blue dog.", "blue"))] * 4
    three_labels = {
        "train": write_jsonl(tmp_path / "train.jsonl", [*rows, {"text": "A big log.", "label": "none"}] * 2),
        "validation": write_jsonl(tmp_path / "validation.jsonl", rows),
    }
    argv = finetune_argv(workspace, tmp_path / "out", "--num_train_epochs", "1", data=three_labels)
    argv[argv.index("--model_name_or_path") + 1] = str(classifier)
    with pytest.raises(DataError, match=r"for the labels \['cat', 'dog'\], the data has \['blue', 'none', 'red'\]"):
        finetune.main(argv)
    finetune.main([*argv, "--ignore_mismatched_sizes"])
    assert read_json(tmp_path / "out" / "config.json")["id2label"] == {"0": "blue", "1": "none", "2": "red"}


def test_texts_longer_than_the_position_table_are_truncated_to_it(workspace, tmp_path):
    long_text = " ".join(["the big red cat sat on the mat"] * 20)  # far more than the checkpoint's 64 positions
    rows = [{"text": long_text, "label": "cat"}, {"text": long_text.replace("cat", "dog"), "label": "dog"}] * 8
    data = {"train": write_jsonl(tmp_path / "train.jsonl", rows), "validation": write_jsonl(tmp_path / "v.jsonl", rows)}
    metrics = finetune.main(finetune_argv(workspace, tmp_path / "out", "--num_train_epochs", "1", data=data))
    assert metrics["train_loss"] > 0
    assert read_json(tmp_path / "out" / "run_info.json")["hyperparameters"]["max_seq_length"] == 64


def test_the_command_line_prints_one_error_line_not_a_traceback(workspace, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.finetune", *finetune_argv(workspace, tmp_path, "--max_steps", "0")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: --max_steps 0 trains nothing")
    assert "Traceback" not in result.stderr


def test_a_checkpoint_that_would_not_fit_on_the_disk_is_refused_before_training(workspace, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(common.shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(DataError, match=r"has 0.1 MiB free, less than one checkpoint of this model needs"):
        finetune.main(finetune_argv(workspace, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
