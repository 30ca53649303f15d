"""Pre-training end to end with a tiny model: tokenizer -> packed blocks -> Trainer -> a loadable checkpoint."""

import math
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.training_data import FAST, TINY_MODEL, read_json, write_text_corpus
from safetensors.torch import load_file
from transformers import AutoTokenizer

from custom_transformer.refresh import code_files
from training import pretrain, train_tokenizer
from training.common import newest_complete_checkpoint

KILLED_AT_STEP = Path(__file__).parent / "helpers" / "pretrain_killed_at_step.py"
REMOTE_CODE = tuple(code_files())  # what every checkpoint ships (tests/test_modeling.py names them)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, str]:
    return write_text_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def tokenizer_dir(corpus, tmp_path_factory) -> str:
    folder = str(tmp_path_factory.mktemp("tokenizer"))
    train_tokenizer.main(["--train_files", corpus["train"], "--output_dir", folder, "--vocab_size", "320"])
    return folder


def pretrain_argv(corpus, tokenizer_dir, output_dir, *extra) -> list[str]:
    return [
        "--tokenizer_name_or_path", tokenizer_dir, "--config_overrides", TINY_MODEL,
        "--train_files", corpus["train"], "--validation_files", corpus["validation"], "--block_size", "16",
        "--output_dir", str(output_dir), "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
        "--logging_steps", "2", "--do_train", "--do_eval", *FAST, *extra,
    ]  # fmt: skip


def test_the_tokenizer_folder_loads_with_special_tokens_and_a_chat_template(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert len(tokenizer) == 320
    specials = [
        tokenizer.pad_token,
        tokenizer.bos_token,
        tokenizer.eos_token,
        tokenizer.mask_token,
        tokenizer.unk_token,
    ]
    assert specials == ["<pad>", "<s>", "</s>", "<mask>", "<unk>"]
    ids = tokenizer("The cat sat on the mat.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "The cat sat on the mat."
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert chat == "<s>user\nhi</s>\n<s>assistant\n"


def test_causal_pretraining_writes_a_checkpoint_with_its_code_and_the_results_contract(corpus, tokenizer_dir, tmp_path):
    # One YAML file holds every argument: the way a run is recorded and repeated.
    config = tmp_path / "run.yaml"
    config.write_text(
        f"""
        tokenizer_name_or_path: {tokenizer_dir}
        preset: llama
        config_overrides: {TINY_MODEL}
        train_files: [{corpus["train"]}]
        validation_files: [{corpus["validation"]}]
        block_size: 16
        output_dir: {tmp_path / "lm"}
        do_train: true
        do_eval: true
        max_steps: 4
        per_device_train_batch_size: 4
        learning_rate: 0.003
        logging_steps: 2
        use_cpu: true
        report_to: none
        disable_tqdm: true
        dataloader_pin_memory: false
        """.replace("\n        ", "\n")
    )
    metrics = pretrain.main([str(config)])

    out = tmp_path / "lm"
    for name in ("model.safetensors", "config.json", "tokenizer.json", *REMOTE_CODE, "trainer_state.json"):
        assert (out / name).is_file(), name
    assert {"train_results.json", "eval_results.json", "all_results.json"} <= {p.name for p in out.iterdir()}
    assert read_json(out / "config.json")["auto_map"]["AutoModelForCausalLM"].endswith("CustomTransformerForCausalLM")
    assert [entry["step"] for entry in read_json(out / "trainer_state.json")["log_history"] if "loss" in entry] == [
        2,
        4,
    ]
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]))

    run_info = read_json(out / "run_info.json")
    assert (run_info["task"], run_info["preset"]) == ("text-generation", "llama")
    assert "base_model" not in run_info  # trained from scratch
    assert run_info["metrics"]["perplexity"] == pytest.approx(metrics["eval_perplexity"])
    assert run_info["baselines"]["unigram"]["perplexity"] > 1
    assert run_info["dataset"]["split_sizes"] == {"train": 240, "validation": 40}
    assert all(not Path(f).is_absolute() for f in run_info["dataset"]["files"])
    assert run_info["hyperparameters"]["model"]["vocab_size"] == 320


def test_encoder_presets_pretrain_as_masked_language_models(corpus, tokenizer_dir, tmp_path):
    metrics = pretrain.main(
        pretrain_argv(corpus, tokenizer_dir, tmp_path / "mlm", "--preset", "bert", "--max_steps", "2")
    )
    run_info = read_json(tmp_path / "mlm" / "run_info.json")
    assert run_info["task"] == "fill-mask"
    assert read_json(tmp_path / "mlm" / "config.json")["architectures"] == ["CustomTransformerForMaskedLM"]
    assert math.isfinite(metrics["eval_loss"])


def test_resuming_from_a_checkpoint_ends_with_the_same_weights_as_an_uninterrupted_run(corpus, tokenizer_dir, tmp_path):
    argv = ["--preset", "llama", "--max_steps", "6", "--save_steps", "3"]
    pretrain.main(pretrain_argv(corpus, tokenizer_dir, tmp_path / "uninterrupted", *argv))

    # A run killed right after its step-3 checkpoint leaves exactly that folder behind.
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    metrics = pretrain.main(
        pretrain_argv(corpus, tokenizer_dir, tmp_path / "resumed", *argv, "--resume_from_checkpoint", "last")
    )

    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0)
    assert metrics["eval_loss"] == read_json(tmp_path / "uninterrupted" / "eval_results.json")["eval_loss"]
    assert read_json(tmp_path / "resumed" / "trainer_state.json")["global_step"] == 6


def test_do_predict_alone_scores_a_saved_language_model(corpus, tokenizer_dir, tmp_path):
    pretrain.main(pretrain_argv(corpus, tokenizer_dir, tmp_path / "lm", "--preset", "llama", "--max_steps", "2"))
    metrics = pretrain.main(
        ["--model_name_or_path", str(tmp_path / "lm"), "--test_files", corpus["validation"], "--do_predict"]
        + ["--block_size", "16", "--output_dir", str(tmp_path / "scores"), *FAST]
    )
    saved = read_json(tmp_path / "scores" / "test_results.json")
    assert saved["test_perplexity"] == pytest.approx(math.exp(saved["test_loss"]))
    # The same blocks as pre-training's own evaluation, so the same loss.
    assert metrics["test_loss"] == pytest.approx(read_json(tmp_path / "lm" / "eval_results.json")["eval_loss"])
    assert not (tmp_path / "scores" / "model.safetensors").exists()  # nothing trained, nothing saved


def test_a_run_killed_mid_training_resumes_to_the_same_weights_as_an_uninterrupted_run(corpus, tokenizer_dir, tmp_path):
    argv = ["--preset", "llama", "--max_steps", "16", "--save_steps", "4"]
    killed_dir = tmp_path / "killed"
    # SIGKILL right after step 10: checkpoint-8 is complete, checkpoint-12 never started, no cleanup ran.
    command = [sys.executable, str(KILLED_AT_STEP), "10", *pretrain_argv(corpus, tokenizer_dir, killed_dir, *argv)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]
    assert newest_complete_checkpoint(str(killed_dir)) == str(killed_dir / "checkpoint-8")
    assert not (killed_dir / "model.safetensors").exists()

    metrics = pretrain.main(pretrain_argv(corpus, tokenizer_dir, killed_dir, *argv, "--resume_from_checkpoint", "last"))
    pretrain.main(pretrain_argv(corpus, tokenizer_dir, tmp_path / "uninterrupted", *argv))

    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(killed_dir / "model.safetensors")
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=0, atol=0)
    assert metrics["eval_loss"] == read_json(tmp_path / "uninterrupted" / "eval_results.json")["eval_loss"]


def test_resuming_skips_a_checkpoint_the_kill_left_half_written(corpus, tokenizer_dir, tmp_path):
    argv = ["--preset", "llama", "--max_steps", "6", "--save_steps", "3"]
    pretrain.main(pretrain_argv(corpus, tokenizer_dir, tmp_path / "uninterrupted", *argv))
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    half_written = tmp_path / "resumed" / "checkpoint-6"
    half_written.mkdir()
    shutil.copy(tmp_path / "uninterrupted" / "checkpoint-6" / "model.safetensors", half_written)

    assert newest_complete_checkpoint(str(tmp_path / "resumed")) == str(tmp_path / "resumed" / "checkpoint-3")
