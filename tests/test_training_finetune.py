"""Fine-tuning a tiny checkpoint: labels from the data, early stopping on the best checkpoint, test metrics next to
baselines in run_info.json, and a saved model that loads without this repository."""

import subprocess
import sys
from pathlib import Path

import pytest
from datasets import ClassLabel, DatasetDict, List, load_dataset
from helpers.training_data import (
    FAST,
    make_workspace,
    read_json,
)
from transformers import AutoConfig, AutoTokenizer, TrainingArguments

from training import finetune
from training.tasks import classification

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("finetune"))


@pytest.fixture(scope="module")
def classifier(workspace, tmp_path_factory) -> Path:
    """A classifier fine-tuned for 2 epochs, with a test split."""
    out = tmp_path_factory.mktemp("classifier")
    data = workspace["classification"]
    finetune.main(
        [
            "--model_name_or_path", workspace["checkpoint"], "--train_files", data["train"],
            "--validation_files", data["validation"], "--test_files", data["test"], "--output_dir", str(out),
            "--num_train_epochs", "2", "--learning_rate", "3e-3", "--per_device_train_batch_size", "16",
            "--dataset_name", "cats-and-dogs", "--dataset_license", "CC0-1.0", "--do_train", "--do_predict", *FAST,
        ]
    )  # fmt: skip
    return out


def test_labels_are_read_from_the_data_and_saved_in_the_config(classifier):
    config = AutoConfig.from_pretrained(classifier, trust_remote_code=True)
    assert config.id2label == {0: "cat", 1: "dog"}
    assert config.label2id == {"cat": 0, "dog": 1}
    assert config.architectures == ["CustomTransformerForSequenceClassification"]


def test_the_run_leaves_trainer_files_and_a_run_info_with_test_metrics_and_baselines(classifier):
    names = {p.name for p in classifier.iterdir()}
    assert {"trainer_state.json", "train_results.json", "eval_results.json", "test_results.json"} <= names
    assert {"all_results.json", "modeling_custom_transformer.py", "tokenizer.json", "run_info.json"} <= names

    run_info = read_json(classifier / "run_info.json")
    test_results = read_json(classifier / "test_results.json")
    assert run_info["task"] == "text-classification"
    assert run_info["evaluated_split"] == "test"
    assert run_info["metrics"]["accuracy"] == test_results["test_accuracy"]
    assert run_info["metrics"]["f1_macro"] == test_results["test_f1_macro"]
    assert run_info["metrics"]["num_rows"] == 23
    assert set(run_info["baselines"]) == {"majority_class", "tfidf_logreg"}
    assert set(run_info["baselines"]["tfidf_logreg"]) >= {"accuracy", "f1_macro"}
    assert run_info["dataset"]["name"] == "cats-and-dogs"
    assert run_info["dataset"]["license"] == "CC0-1.0"
    assert run_info["dataset"]["split_sizes"] == {"train": 64, "validation": 21, "test": 23}
    assert not Path(run_info["base_model"]).is_absolute()
    assert all(not Path(f).is_absolute() for f in run_info["dataset"]["files"])
    assert isinstance(run_info["wall_time_seconds"], float)
    assert run_info["hardware"]
    assert run_info["hyperparameters"]["num_epochs"] == 2  # transformers' own summary of the Trainer's arguments
    assert run_info["hyperparameters"]["model"]["hidden_size"] == 32


def test_the_best_checkpoint_by_macro_f1_is_the_model_that_is_saved(classifier):
    state = read_json(classifier / "trainer_state.json")
    evaluations = [entry for entry in state["log_history"] if "eval_f1_macro" in entry]
    best = max(evaluations, key=lambda entry: entry["eval_f1_macro"])
    assert state["best_metric"] == best["eval_f1_macro"]
    assert read_json(classifier / "eval_results.json")["eval_f1_macro"] == pytest.approx(best["eval_f1_macro"])


def test_early_stopping_ends_training_when_validation_stops_improving(workspace, tmp_path):
    data = workspace["classification"]
    # With a learning rate of zero nothing improves after the first evaluation: patience 1 stops at epoch 2 of 10.
    finetune.main(
        [
            "--model_name_or_path", workspace["checkpoint"], "--train_files", data["train"],
            "--validation_files", data["validation"], "--output_dir", str(tmp_path), "--num_train_epochs", "10",
            "--learning_rate", "0", "--per_device_train_batch_size", "32", "--early_stopping_patience", "1",
            "--baselines", "false", "--do_train", *FAST,
        ]
    )  # fmt: skip
    state = read_json(tmp_path / "trainer_state.json")
    assert state["epoch"] == 2
    assert Path(state["best_model_checkpoint"]).name == "checkpoint-2"  # 64 rows / 32 = 2 steps per epoch
    assert read_json(tmp_path / "run_info.json")["evaluated_split"] == "validation"


def test_do_predict_alone_reproduces_the_test_metrics_of_fine_tuning(classifier, workspace, tmp_path):
    test_files = ["--test_files", workspace["classification"]["test"]]
    metrics = finetune.main(
        ["--model_name_or_path", str(classifier), *test_files, "--do_predict"] + ["--output_dir", str(tmp_path), *FAST]
    )
    expected = read_json(classifier / "test_results.json")
    assert metrics["test_accuracy"] == expected["test_accuracy"]
    assert metrics["test_f1_macro"] == expected["test_f1_macro"]
    assert read_json(tmp_path / "test_results.json")["test_num_rows"] == 23
    assert not (tmp_path / "run_info.json").exists()  # scoring is not a training run


def test_the_fine_tuned_classifier_loads_without_the_package(classifier, workspace, tmp_path):
    script = REPO / "training" / "load_without_package.py"
    result = subprocess.run(
        [sys.executable, str(script), "--classifier", str(classifier), "--language_model", workspace["checkpoint"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "classifier: transformers_modules." in result.stdout
    assert "language model: transformers_modules." in result.stdout
    assert "custom_transformer was never imported" in result.stdout


def test_token_classification_labels_the_first_piece_of_each_word(workspace):
    tokenizer = AutoTokenizer.from_pretrained(workspace["checkpoint"])
    tags = ClassLabel(names=["ANIMAL", "COLOUR", "O"])
    train = load_dataset("json", data_files=workspace["tokens"]["train"], split="train")
    splits = DatasetDict({"train": train.cast_column("tags", List(tags))})
    encoded = classification.tokenize_for_token_classification(
        splits, tokenizer, "tokens", "tags", 64, TrainingArguments(output_dir="unused", use_cpu=True)
    )
    for raw, row in zip(train, encoded["train"]):
        scored = [label for label in row["labels"] if label != -100]
        assert scored == [tags.str2int(tag) for tag in raw["tags"]]  # one label per word, in order
        assert row["labels"][0] == -100  # <s>
        pieces = tokenizer.convert_ids_to_tokens(
            [i for i, label in zip(row["input_ids"], row["labels"]) if label != -100]
        )
        assert all(word.startswith(piece.lstrip("Ġ")) for word, piece in zip(raw["tokens"], pieces))  # first pieces


def test_token_classification_fine_tunes_end_to_end(workspace, tmp_path):
    data = workspace["tokens"]
    metrics = finetune.main(
        [
            "--model_name_or_path", workspace["checkpoint"], "--task", "token-classification",
            "--train_files", data["train"], "--validation_files", data["validation"], "--output_dir", str(tmp_path),
            "--num_train_epochs", "1", "--learning_rate", "3e-3", "--do_train", *FAST,
        ]
    )  # fmt: skip
    config = AutoConfig.from_pretrained(tmp_path, trust_remote_code=True)
    assert config.id2label == {0: "ANIMAL", 1: "COLOUR", 2: "O"}
    assert config.architectures == ["CustomTransformerForTokenClassification"]
    assert 0 <= metrics["eval_accuracy"] <= 1
    run_info = read_json(tmp_path / "run_info.json")
    assert run_info["task"] == "token-classification"
    assert set(run_info["baselines"]) == {"majority_class"}
