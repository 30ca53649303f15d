"""Fine-tuning an encoder-decoder for translation with the task-generic script: from scratch on sentence pairs, scored
by generating (BLEU and chrF through sacrebleu) next to copying the source and a translation memory on the same rows."""

import json
import shutil

import pytest
import torch
from helpers.training_data import FAST, TINY_SEQ2SEQ, read_json, write_jsonl, write_translation_data
from safetensors.torch import load_file
from transformers import AutoConfig

from model_cards import export_run
from training import finetune
from training.common import DataError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_translation_data(tmp_path_factory.mktemp("pairs"))


def arguments(data, out, *extra) -> list[str]:
    return [
        "--preset", "vaswani", "--config_overrides", TINY_SEQ2SEQ, "--tokenizer_name_or_path", data["tokenizer"],
        "--task", "translation", "--train_files", data["train"], "--validation_files", data["validation"],
        "--output_dir", str(out), "--dataset_name", "toy-pairs", "--dataset_license", "CC0-1.0", *FAST, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def translator(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("translator")
    finetune.main(
        arguments(data, out, "--test_files", data["test"], "--num_train_epochs", "20", "--learning_rate", "3e-3", "--lr_scheduler_type", "constant_with_warmup",
                  "--warmup_steps", "20", "--per_device_train_batch_size", "16", "--early_stopping_patience", "0",
                  "--do_train", "--do_predict")
    )  # fmt: skip
    return out


def test_a_translator_trained_from_scratch_beats_copying_the_source_and_a_translation_memory(translator):
    run_info = read_json(translator / "run_info.json")
    assert run_info["task"] == "translation" and run_info["evaluated_split"] == "test"
    metrics, baselines = run_info["metrics"], run_info["baselines"]
    assert metrics["num_rows"] == 24
    for baseline in ("copy_source", "nearest_neighbour"):
        assert metrics["bleu"] > baselines[baseline]["bleu"] + 20, (metrics, baselines)
        assert metrics["chrf"] > baselines[baseline]["chrf"], (metrics, baselines)
    # The toy language is word for word, so a dictionary is nearly the right model (chrF 97 here, as the model's).
    assert metrics["bleu"] > baselines["word_by_word"]["bleu"], (metrics, baselines)


def test_the_translator_is_saved_as_an_encoder_decoder_that_ships_its_translation_pipeline(translator):
    config = AutoConfig.from_pretrained(translator, trust_remote_code=True)
    assert config.architectures == ["CustomTransformerForConditionalGeneration"]
    assert config.is_encoder_decoder and config.decoder_start_token_id == config.bos_token_id
    assert "translation" in config.custom_pipelines
    assert (translator / "pipeline_custom_transformer.py").is_file()


def test_the_card_of_the_run_loads_the_shipped_pipeline_by_name_and_shows_the_baselines(translator, tmp_path):
    export_run(translator, tmp_path / "hub")
    card = (tmp_path / "hub" / "README.md").read_text()
    assert 'pipe = pipeline("translation", model=repo_id, trust_remote_code=True, revision=revision)' in card
    assert "| Copy of the source |" in card and "| Layers | 2 encoder + 2 decoder |" in card


def test_pairs_with_an_empty_target_are_refused_naming_how_many_and_the_first(data, tmp_path):
    rows = [json.loads(line) for line in open(data["train"], encoding="utf-8")]
    rows[3]["target"] = "  "
    broken = {**data, "train": write_jsonl(tmp_path / "train.jsonl", rows)}
    with pytest.raises(DataError, match=r"1 row\(s\) of the train split have an empty target .* \(first: row 3\)"):
        finetune.main(arguments(broken, tmp_path / "out", "--do_train"))


def test_a_translator_resumed_from_its_checkpoint_ends_with_the_weights_and_bleu_of_an_uninterrupted_run(
    data, tmp_path
):
    argv = [
        "--do_train", "--do_predict", "--test_files", data["test"], "--max_steps", "6", "--learning_rate", "3e-3",
        "--per_device_train_batch_size", "8", "--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "no",
        "--load_best_model_at_end", "false", "--early_stopping_patience", "0",
    ]  # fmt: skip
    finetune.main(arguments(data, tmp_path / "uninterrupted", *argv))

    # A run killed right after its step-3 checkpoint leaves exactly that folder behind.
    shutil.copytree(tmp_path / "uninterrupted" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")
    finetune.main(arguments(data, tmp_path / "resumed", *argv, "--resume_from_checkpoint", "last"))

    expected = load_file(tmp_path / "uninterrupted" / "model.safetensors")
    resumed = load_file(tmp_path / "resumed" / "model.safetensors")
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(resumed[name], expected[name]) for name in expected)
    scores = [read_json(tmp_path / run / "run_info.json")["metrics"] for run in ("uninterrupted", "resumed")]
    assert scores[0]["bleu"] == scores[1]["bleu"] and scores[0]["chrf"] == scores[1]["chrf"]
    assert read_json(tmp_path / "resumed" / "trainer_state.json")["global_step"] == 6
