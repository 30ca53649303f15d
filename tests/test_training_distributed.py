"""Two CPU processes (gloo) give the numbers of one process on the same global batch, with no code change.

The pitfalls this guards against: a loss multiplied by the world size when a head averages its own loss
but the Trainer assumes it divides by the global token count, and evaluation rows counted twice when the
last batch is padded to split evenly between processes.
"""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.training_data import (
    FAST,
    TINY_MODEL,
    TINY_SEQ2SEQ,
    TINY_VIT,
    make_workspace,
    read_json,
    write_image_folders,
    write_translation_data,
)
from safetensors.torch import load_file

from training import finetune, pretrain

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
# Not `--cpu --num_processes 2`: on a machine without GPUs that starts a single process.
ACCELERATE = [
    sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
    "--mixed_precision", "no", "--dynamo_backend", "no",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("distributed"))


def launch(launcher: list[str], module: str, argv: list[str]):
    result = subprocess.run([*launcher, module, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def assert_same_weights(folder_a: Path, folder_b: Path):
    a, b = load_file(folder_a / "model.safetensors"), load_file(folder_b / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5)


# Both tests log every step: Trainer's final train_loss adds the steps after the last log from the main process
# only (transformers 5.23, `_finalize_training`), which under DDP is not the mean over processes.


def test_torchrun_fine_tuning_matches_one_process_and_counts_evaluation_rows_once(workspace, tmp_path):
    data = workspace["classification"]

    def argv(output_dir, per_device_batch):
        return [
            "--model_name_or_path", workspace["checkpoint"], "--train_files", data["train"],
            "--validation_files", data["validation"], "--output_dir", str(output_dir), "--num_train_epochs", "2",
            "--learning_rate", "3e-3", "--per_device_train_batch_size", str(per_device_batch),
            "--per_device_eval_batch_size", "1", "--baselines", "false", "--save_strategy", "no",
            "--load_best_model_at_end", "false", "--early_stopping_patience", "0", "--logging_steps", "1",
            "--do_train", *FAST,
        ]  # fmt: skip

    finetune.main(argv(tmp_path / "one", per_device_batch=16))
    launch(TORCHRUN, "training.finetune", argv(tmp_path / "two", per_device_batch=8))

    one, two = read_json(tmp_path / "one" / "all_results.json"), read_json(tmp_path / "two" / "all_results.json")
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)  # not doubled
    # 21 rows on 2 processes: the second process's last batch repeats a row to keep step with the first, and
    # that duplicate is dropped when predictions are gathered (batches of one row, so from the loss too).
    assert two["eval_num_rows"] == one["eval_num_rows"] == 21
    assert two["eval_accuracy"] == one["eval_accuracy"]
    assert two["eval_f1_macro"] == one["eval_f1_macro"]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    assert read_json(tmp_path / "two" / "run_info.json")["hyperparameters"]["num_devices"] == 2


def test_accelerate_launch_pretraining_matches_one_process(workspace, tmp_path):
    text = workspace["text"]

    def argv(output_dir, per_device_batch):
        return [
            "--tokenizer_name_or_path", workspace["tokenizer"], "--preset", "llama", "--config_overrides", TINY_MODEL,
            "--train_files", text["train"], "--validation_files", text["validation"], "--block_size", "16",
            "--output_dir", str(output_dir), "--max_steps", "4", "--per_device_train_batch_size", str(per_device_batch),
            "--per_device_eval_batch_size", "1", "--learning_rate", "3e-3", "--save_strategy", "no",
            "--logging_steps", "1", "--do_train", "--do_eval", *FAST,
        ]  # fmt: skip

    # Evaluation batches of one block: the padding duplicate of an uneven split is a batch of its own and is
    # dropped whole, so even eval_loss is that of one process.
    pretrain.main(argv(tmp_path / "one", per_device_batch=8))
    launch([*ACCELERATE, "--main_process_port", str(free_port()), "-m"], "training.pretrain", argv(tmp_path / "two", 4))

    one, two = read_json(tmp_path / "one" / "all_results.json"), read_json(tmp_path / "two" / "all_results.json")
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["eval_samples"] == one["eval_samples"]
    assert two["eval_loss"] == pytest.approx(one["eval_loss"], rel=1e-4)
    assert_same_weights(tmp_path / "one", tmp_path / "two")
    assert read_json(tmp_path / "two" / "run_info.json")["hyperparameters"]["num_devices"] == 2


def test_torchrun_trains_an_image_classifier_from_scratch_like_one_process(tmp_path):
    images = write_image_folders(tmp_path / "images", sizes=(("train", 8), ("validation", 3)))

    def argv(output_dir, per_device_batch):
        return [
            "--preset", "vit", "--config_overrides", TINY_VIT, "--task", "image-classification",
            "--train_files", images["train"], "--validation_files", images["validation"], "--output_dir",
            str(output_dir), "--num_train_epochs", "2", "--learning_rate", "3e-3", "--per_device_train_batch_size",
            str(per_device_batch), "--per_device_eval_batch_size", "1", "--augmentation", "none", "--baselines",
            "false", "--save_strategy", "no", "--load_best_model_at_end", "false", "--early_stopping_patience", "0",
            "--logging_steps", "1", "--do_train", *FAST,
        ]  # fmt: skip

    finetune.main(argv(tmp_path / "one", per_device_batch=16))
    launch(TORCHRUN, "training.finetune", argv(tmp_path / "two", per_device_batch=8))

    one, two = read_json(tmp_path / "one" / "all_results.json"), read_json(tmp_path / "two" / "all_results.json")
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    assert two["eval_num_rows"] == one["eval_num_rows"] == 12
    assert_same_weights(tmp_path / "one", tmp_path / "two")


def test_torchrun_trains_a_translator_like_one_process_and_scores_each_generated_translation_once(tmp_path):
    """Generated translations differ in length between processes: they are padded to be gathered, and the padding
    of the uneven split (15 pairs on 2 processes) is dropped before BLEU is computed."""
    pairs = write_translation_data(tmp_path / "pairs", sizes=(("train", 32), ("validation", 15)))

    def argv(output_dir, per_device_batch):
        return [
            "--preset", "vaswani", "--config_overrides", TINY_SEQ2SEQ, "--tokenizer_name_or_path", pairs["tokenizer"],
            "--task", "translation", "--train_files", pairs["train"], "--validation_files", pairs["validation"],
            "--output_dir", str(output_dir), "--num_train_epochs", "2", "--learning_rate", "3e-3",
            "--per_device_train_batch_size", str(per_device_batch), "--per_device_eval_batch_size", "1",
            "--baselines", "false", "--save_strategy", "no", "--load_best_model_at_end", "false",
            "--early_stopping_patience", "0", "--logging_steps", "1", "--do_train", "--do_eval", *FAST,
        ]  # fmt: skip

    finetune.main(argv(tmp_path / "one", per_device_batch=16))
    launch(TORCHRUN, "training.finetune", argv(tmp_path / "two", per_device_batch=8))

    one, two = read_json(tmp_path / "one" / "all_results.json"), read_json(tmp_path / "two" / "all_results.json")
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)  # token-level loss, not doubled
    assert two["eval_num_rows"] == one["eval_num_rows"] == 15
    assert two["eval_bleu"] == pytest.approx(one["eval_bleu"]) and two["eval_chrf"] == pytest.approx(one["eval_chrf"])
    assert_same_weights(tmp_path / "one", tmp_path / "two")
