"""Extractive question answering as a fine-tuning task: SQuAD-style JSON lines in, exact match and F1 out, next to
the sliding-window baseline on the same rows (training/tasks/question_answering.py)."""

import json

import pytest
import torch
from datasets import DatasetDict, load_dataset
from helpers.training_data import FAST, make_workspace, read_json, write_jsonl
from transformers import AutoConfig, AutoTokenizer, TrainingArguments

from training import finetune
from training.common import DataError, load_metric
from training.tasks import question_answering as qa


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("qa"))


@pytest.fixture(scope="module")
def answerer(workspace, tmp_path_factory):
    out = tmp_path_factory.mktemp("answerer")
    data = workspace["question_answering"]
    finetune.main(
        [
            "--model_name_or_path", workspace["checkpoint"], "--task", "question-answering",
            "--train_files", data["train"], "--validation_files", data["validation"], "--test_files", data["test"],
            "--output_dir", str(out), "--num_train_epochs", "3", "--learning_rate", "3e-3",
            "--per_device_train_batch_size", "16", "--dataset_name", "where-animals-sat", "--dataset_license", "CC0-1.0",
            "--do_train", "--do_predict", *FAST,
        ]
    )  # fmt: skip
    return out


def splits_of(path: str) -> DatasetDict:
    return DatasetDict({"train": load_dataset("json", data_files=path, split="train")})


def test_fine_tuning_reports_exact_match_and_f1_next_to_the_baseline_on_the_same_rows(answerer):
    run_info = read_json(answerer / "run_info.json")
    test_results = read_json(answerer / "test_results.json")
    assert run_info["task"] == "question-answering"
    assert AutoConfig.from_pretrained(answerer).architectures == ["CustomTransformerForQuestionAnswering"]
    metrics, baseline = run_info["metrics"], run_info["baselines"]["sliding_window"]
    assert metrics["exact_match"] == test_results["test_exact_match"] and metrics["f1"] == test_results["test_f1"]
    assert 0 <= metrics["exact_match"] <= metrics["f1"] <= 100 and 0 <= baseline["exact_match"] <= 100
    assert metrics["num_rows"] == baseline["num_rows"] == 24  # every answer fits: all rows scored
    state = read_json(answerer / "trainer_state.json")
    assert state["best_metric"] is not None and any("eval_f1" in entry for entry in state["log_history"])


def test_the_cards_usage_lines_answer_a_question_with_the_fine_tuned_model(answerer):
    """transformers 5 removed the question-answering pipeline: the card shows the lines that use the model."""
    from transformers import AutoModelForQuestionAnswering

    namespace = {
        "model": AutoModelForQuestionAnswering.from_pretrained(answerer).eval(),
        "tokenizer": AutoTokenizer.from_pretrained(answerer),
        "print": lambda text: printed.append(text),
    }
    printed = []
    exec(finetune.FINE_TUNING_TASKS["question-answering"].example_call, namespace)
    assert len(printed) == 1 and isinstance(printed[0], str)


def test_the_labels_are_the_first_and_last_token_of_the_answer(workspace):
    tokenizer = AutoTokenizer.from_pretrained(workspace["checkpoint"])
    raw = splits_of(workspace["question_answering"]["train"])
    encoded = qa.tokenize_for_question_answering(
        raw, tokenizer, "question", "context", "answers", 64, TrainingArguments(output_dir="unused", use_cpu=True)
    )
    for row, features in zip(raw["train"], encoded["train"]):
        span = features["input_ids"][features["start_positions"] : features["end_positions"] + 1]
        assert tokenizer.decode(span).strip() == row["answers"]["text"][0]


def test_an_answer_the_truncation_cuts_off_is_labelled_at_position_zero_and_not_scored(workspace, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(workspace["checkpoint"])
    context = "The cat sat on the mat. " * 6 + "The dog ran under the log."
    row = {"question": "Where?", "context": context, "answers": {"text": ["log"], "answer_start": [len(context) - 4]}}
    raw = splits_of(write_jsonl(tmp_path / "long.jsonl", [row]))
    encoded = qa.tokenize_for_question_answering(
        raw, tokenizer, "question", "context", "answers", 16, TrainingArguments(output_dir="unused", use_cpu=True)
    )
    assert (encoded["train"][0]["start_positions"], encoded["train"][0]["end_positions"]) == (0, 0)
    rows, _ = qa.gold_texts(tokenizer, [encoded["train"][0]["input_ids"]], [0], [0])
    assert rows == []


def test_the_prediction_is_the_best_span_that_starts_before_it_ends_and_is_not_too_long():
    start_logits = torch.tensor([[-99.0, 5.0, -99.0, -99.0, 9.0] + [-99.0] * 40])
    end_logits = torch.tensor([[0.0, 0.0, 0.0, 8.0, 0.0] + [0.0] * 39 + [20.0]])
    # (4, 3) ends before it starts; (4, 44) is 41 tokens long, (1, 44) 44: the best allowed span is (1, 3)
    assert qa.logits_to_predictions((start_logits, end_logits), None).tolist() == [[1, 3]]


def test_exact_match_and_f1_are_squads():
    squad = load_metric("squad")
    scores = squad.compute(predictions=["The Log!", "under the mat"], references=[["log"], ["mat"]])
    assert scores == {"exact_match": 50.0, "f1": pytest.approx(100 * (1 + 2 * 0.5 * 1 / 1.5) / 2)}


def test_an_answer_that_is_not_where_it_says_is_refused_naming_the_row(workspace, tmp_path):
    rows = [json.loads(line) for line in open(workspace["question_answering"]["train"])][:3]
    rows[2]["answers"]["answer_start"] = [0]
    raw = splits_of(write_jsonl(tmp_path / "bad.jsonl", rows))
    task = finetune.FINE_TUNING_TASKS["question-answering"]
    with pytest.raises(DataError, match=r"Row 2 of the train split: the answer '(mat|log)' is not at character 0"):
        qa.read_labels(raw, task, finetune.DataArguments(), None, None, do_train=True)
