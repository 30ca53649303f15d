"""The training scripts' command line, and the mistakes they must report before any training step.

Each error names the problem and the fix; these tests pin the wording that says so.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.training_data import (
    FAST,
    TINY_MODEL,
    make_tokenizer,
    make_workspace,
    write_jsonl,
)
from transformers import TrainingArguments

from training import demo, finetune, pretrain, train_tokenizer
from training.common import DataError, parse_args

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("script", [train_tokenizer, pretrain, finetune, demo])
def test_every_script_explains_its_flags(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    assert "--output_dir" in capsys.readouterr().out


def test_scripts_run_as_modules():
    result = subprocess.run(
        [sys.executable, "-m", "training.finetune", "--help"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "--model_name_or_path" in result.stdout
    assert "--learning_rate" in result.stdout  # TrainingArguments are parsed with the script's own


def test_arguments_come_from_one_yaml_or_json_file(tmp_path):
    arguments = {
        "tokenizer_name_or_path": "tok",
        "preset": "bert",
        "config_overrides": "hidden_size=32",
        "train_files": ["a.txt", "b.txt"],
        "block_size": 16,
        "output_dir": str(tmp_path / "out"),
        "learning_rate": 0.001,
        "max_steps": 7,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(arguments))
    (tmp_path / "run.json").write_text(json.dumps(arguments))
    types = (pretrain.ModelArguments, pretrain.DataArguments, TrainingArguments)
    for name in ("run.yaml", "run.json"):
        model_args, data_args, training_args = parse_args(types, [str(tmp_path / name)])
        assert (model_args.preset, model_args.config_overrides) == ("bert", "hidden_size=32")
        assert (data_args.train_files, data_args.block_size) == (["a.txt", "b.txt"], 16)
        assert (training_args.learning_rate, training_args.max_steps) == (0.001, 7)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"Config file .*nope.yaml does not exist"):
        pretrain.main([str(tmp_path / "nope.yaml")])


# ------------------------------------------------------------------------------------------------------------
# Pre-training inputs


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("cli"))


def pretrain_argv(workspace, tmp_path, *extra) -> list[str]:
    return [
        "--tokenizer_name_or_path", workspace["tokenizer"], "--preset", "llama", "--config_overrides", TINY_MODEL,
        "--train_files", workspace["text"]["train"], "--validation_files", workspace["text"]["validation"],
        "--block_size", "16", "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--do_train", "--do_eval",
        *FAST, *extra,
    ]  # fmt: skip


def test_a_missing_data_file_is_named(workspace, tmp_path):
    argv = pretrain_argv(workspace, tmp_path, "--validation_files", str(tmp_path / "missing.txt"))
    with pytest.raises(DataError, match=r"validation file .*missing.txt does not exist"):
        pretrain.main(argv)


def test_an_empty_data_file_is_reported_as_an_empty_split(workspace, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"train file .*empty.txt is empty"):
        pretrain.main(pretrain_argv(workspace, tmp_path, "--train_files", str(tmp_path / "empty.txt")))


def test_a_missing_text_column_names_the_columns_and_the_flag(workspace, tmp_path):
    data = write_jsonl(tmp_path / "content.jsonl", [{"content": "Hello there."}] * 4)
    with pytest.raises(DataError, match=r"no column 'text'; its columns are \['content'\].*--text_column"):
        pretrain.main(pretrain_argv(workspace, tmp_path, "--train_files", data, "--validation_files", data))


def test_a_model_vocabulary_smaller_than_the_tokenizer_is_a_mismatch(workspace, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2})
    )
    argv = pretrain_argv(workspace, tmp_path)
    argv[argv.index("--preset") : argv.index("--preset") + 2] = ["--config_file", str(config)]
    with pytest.raises(DataError, match=r"Tokenizer/model vocabulary mismatch: .* 320 tokens .* vocab_size=100"):
        pretrain.main(argv)


def test_unknown_config_overrides_are_listed(workspace, tmp_path):
    argv = pretrain_argv(workspace, tmp_path)
    argv[argv.index("--config_overrides") + 1] = "hiden_size=32"
    with pytest.raises(DataError, match=r"Unknown config field\(s\) in --config_overrides: \['hiden_size'\]"):
        pretrain.main(argv)


def test_blocks_longer_than_the_position_table_are_refused(workspace, tmp_path):
    with pytest.raises(DataError, match=r"--block_size 128 exceeds max_position_embeddings=64"):
        pretrain.main(pretrain_argv(workspace, tmp_path, "--block_size", "128"))


def test_a_split_shorter_than_one_block_is_refused(workspace, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("The cat sat.\n")
    with pytest.raises(DataError, match=r"validation split holds \d+ tokens, fewer than one block"):
        pretrain.main(pretrain_argv(workspace, tmp_path, "--validation_files", str(short)))


def test_resuming_from_a_folder_that_is_not_a_checkpoint_is_refused(workspace, tmp_path):
    with pytest.raises(DataError, match=r"is not a Trainer checkpoint"):
        pretrain.main(pretrain_argv(workspace, tmp_path, "--resume_from_checkpoint", str(tmp_path)))
    with pytest.raises(DataError, match=r"there is no checkpoint-\* folder in"):
        pretrain.main(pretrain_argv(workspace, tmp_path, "--resume_from_checkpoint", "last"))


# ------------------------------------------------------------------------------------------------------------
# Fine-tuning and evaluation inputs


def finetune_argv(workspace, tmp_path, *extra) -> list[str]:
    data = workspace["classification"]
    return [
        "--model_name_or_path", workspace["checkpoint"], "--train_files", data["train"],
        "--validation_files", data["validation"], "--output_dir", str(tmp_path / "out"), "--do_train", *FAST, *extra,
    ]  # fmt: skip


def test_a_different_tokenizer_than_the_checkpoints_is_a_mismatch(workspace, tmp_path):
    make_tokenizer(tmp_path / "other_tokenizer", vocab_size=300)
    argv = finetune_argv(workspace, tmp_path, "--tokenizer_name_or_path", str(tmp_path / "other_tokenizer"))
    with pytest.raises(DataError, match=r"Tokenizer/model vocabulary mismatch: .* is not the tokenizer"):
        finetune.main(argv)


def test_a_folder_without_config_is_not_a_model(workspace, tmp_path):
    argv = finetune_argv(workspace, tmp_path)
    argv[argv.index("--model_name_or_path") + 1] = str(tmp_path)
    with pytest.raises(DataError, match=r"is not a model folder \(no config.json\)"):
        finetune.main(argv)
    with pytest.raises(DataError, match=r"is not a model folder \(no config.json\)"):
        pretrain.main(["--model_name_or_path", str(tmp_path), "--test_files", workspace["text"]["validation"]])


def test_a_run_without_do_flags_is_told_what_to_pass(workspace, tmp_path):
    argv = [flag for flag in pretrain_argv(workspace, tmp_path) if flag not in ("--do_train", "--do_eval")]
    with pytest.raises(DataError, match=r"Nothing to do: pass --do_train, --do_eval and/or --do_predict"):
        pretrain.main(argv)


def test_test_files_without_do_predict_are_refused(workspace, tmp_path):
    argv = finetune_argv(workspace, tmp_path, "--test_files", workspace["classification"]["test"])
    with pytest.raises(DataError, match=r"--test_files are scored only with --do_predict"):
        finetune.main(argv)


def test_scoring_a_model_without_a_fine_tuned_head_asks_for_do_train(workspace, tmp_path):
    argv = ["--model_name_or_path", workspace["checkpoint"], "--test_files", workspace["classification"]["test"]]
    with pytest.raises(DataError, match=r"CustomTransformerForCausalLM has no text-classification head.*--do_train"):
        finetune.main([*argv, "--do_predict", "--output_dir", str(tmp_path), *FAST])


def test_a_missing_label_column_names_the_flag(workspace, tmp_path):
    with pytest.raises(DataError, match=r"no column 'category'.*--label_column"):
        finetune.main(finetune_argv(workspace, tmp_path, "--label_column", "category"))


def test_test_labels_unseen_in_training_are_named(workspace, tmp_path):
    test = write_jsonl(
        tmp_path / "test.jsonl", [{"text": "A bird.", "label": "bird"}, {"text": "A cat.", "label": "cat"}]
    )
    with pytest.raises(DataError, match=r"The test split has label\(s\) \['bird'\] that the train split"):
        finetune.main(finetune_argv(workspace, tmp_path, "--test_files", test, "--do_predict"))


def test_a_single_label_cannot_train_a_classifier(workspace, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "A cat.", "label": "cat"}] * 8)
    argv = finetune_argv(workspace, tmp_path)
    argv[argv.index("--train_files") + 1] = train
    with pytest.raises(DataError, match=r"has 1 distinct label\(s\): need at least 2"):
        finetune.main(argv)


def test_early_stopping_without_evaluation_is_refused(workspace, tmp_path):
    argv = finetune_argv(
        workspace, tmp_path, "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false"
    )
    with pytest.raises(DataError, match=r"Early stopping needs evaluation.*--early_stopping_patience 0"):
        finetune.main(argv)


def test_the_fsdp_config_is_an_accelerate_config_that_wraps_the_models_layers():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from helpers.models import tiny_config

    from custom_transformer import (
        CustomTransformerForCausalLM,
        CustomTransformerForConditionalGeneration,
        CustomTransformerForMaskedLM,
    )

    config = load_config_from_file(str(REPO / "training" / "accelerate_configs" / "fsdp.yaml"))
    assert config.distributed_type == "FSDP"
    fsdp = config.fsdp_config
    assert "fsdp_transformer_layer_cls_to_wrap" not in fsdp  # the model's own _no_split_modules decide
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"], auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower()
    )
    for model, stacks in (
        (CustomTransformerForCausalLM(tiny_config("llama")), ("model",)),
        (CustomTransformerForMaskedLM(tiny_config("bert")), ("model",)),
        (CustomTransformerForConditionalGeneration(tiny_config("vaswani")), ("model.encoder", "model.decoder")),
    ):
        policy = fsdp2_prepare_auto_wrap_policy(plugin, model)
        assert all(policy(layer) for stack in stacks for layer in model.get_submodule(stack).layers)
