"""Extractive question answering (SQuAD-style): a question and a passage in, the answer's span in the passage out.

Data: JSON lines with a `question`, a `context` and `answers` as SQuAD writes them, `{"text": [...],
"answer_start": [...]}` (character offsets into the context; the first answer is the one trained on). The pair is
tokenized as one sequence with the passage truncated to fit; an answer the truncation cuts off is labelled at
position 0, as transformers' `run_qa.py` labels it at the CLS token, and is left out of the scores (`num_truncated`
says how many). Predictions are the best span of at most `MAX_ANSWER_TOKENS`; exact match and F1 compare its text
with the gold span's (both decoded from the same tokens), normalised as SQuAD v1.1 does. The baseline is the
sliding window of Rajpurkar et al. (2016), scored on the same rows against the same texts.
"""

import re
import statistics

import numpy as np
import torch
from datasets import DatasetDict
from transformers import EvalPrediction

from ..common import DataError, load_metric, map_replacing_columns
from . import Task

MAX_ANSWER_TOKENS = 30
INCLUDE_FOR_METRICS = ("inputs",)  # the answers' texts are decoded from the input ids


def read_labels(raw: DatasetDict, task: Task, data_args, model_args, base_config, do_train: bool):
    """Refuse answers that are not where they say they are in their passage; a QA head has no label names."""
    question_column, context_column, answers_column = task.column_flags(data_args)
    for split, dataset in raw.items():
        for row, (context, answers) in enumerate(zip(dataset[context_column], dataset[answers_column])):
            texts, starts = (answers or {}).get("text") or [], (answers or {}).get("answer_start") or []
            if not texts or len(texts) != len(starts):
                raise DataError(
                    f"Row {row} of the {split} split has answers {answers!r}: each needs "
                    '{"text": [...], "answer_start": [...]} with one start per text (SQuAD\'s layout).'
                )
            start = starts[0]
            if context[start : start + len(texts[0])] != texts[0]:
                raise DataError(
                    f"Row {row} of the {split} split: the answer {texts[0]!r} is not at character {start} of its "
                    f"{context_column!r} (found {context[start : start + len(texts[0])]!r}). answer_start counts "
                    "characters of the context from 0."
                )
    return raw, {}


def stratify_column(task: Task, data_args) -> None:
    return None


def tokenize_for_question_answering(
    splits, tokenizer, question_column, context_column, answers_column, max_length, training_args, num_proc=None, **_
) -> DatasetDict:
    """Question then passage, the passage truncated; `start_positions`/`end_positions` are the first and last
    token of the first answer, or 0 and 0 when the truncation cut it off."""
    if not tokenizer.is_fast:
        raise DataError("Question answering needs a fast tokenizer (character offsets): save one with `tokenizers`.")

    def encode(batch):
        encoded = tokenizer(
            batch[question_column],
            batch[context_column],
            truncation="only_second",
            max_length=max_length,
            return_offsets_mapping=True,
        )
        starts, ends = [], []
        for row, answers in enumerate(batch[answers_column]):
            first_char = answers["answer_start"][0]
            last_char = first_char + len(answers["text"][0])
            offsets = encoded["offset_mapping"][row]
            passage = [i for i, sequence in enumerate(encoded.sequence_ids(row)) if sequence == 1]
            start = next((i for i in passage if offsets[i][1] > first_char), None)
            end = next((i for i in reversed(passage) if offsets[i][0] < last_char), None)
            fits = start is not None and end is not None and offsets[passage[-1]][1] >= last_char and start <= end
            starts.append(start if fits else 0)
            ends.append(end if fits else 0)
        encoded.pop("offset_mapping")
        return {**encoded, "start_positions": starts, "end_positions": ends}

    with training_args.main_process_first(desc="tokenizing"):
        return map_replacing_columns(splits, encode, num_proc)


def logits_to_predictions(logits, labels) -> torch.Tensor:
    """The best span (start <= end, at most MAX_ANSWER_TOKENS long) of each row, as (start, end) token indices."""
    start_logits, end_logits = logits[0], logits[1]
    length = start_logits.shape[-1]
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    allowed = torch.ones(length, length, dtype=torch.bool, device=scores.device).triu().tril(MAX_ANSWER_TOKENS - 1)
    best = scores.masked_fill(~allowed, float("-inf")).flatten(1).argmax(dim=-1)
    return torch.stack([best // length, best % length], dim=-1)


def span_text(tokenizer, input_ids, start: int, end: int) -> str:
    ids = [int(i) for i in input_ids[start : end + 1] if i >= 0]  # batches are padded with -100 between them
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def gold_texts(tokenizer, input_ids, starts, ends) -> tuple[list[int], list[str]]:
    """The rows whose answer survived truncation, and the text of each one's gold span."""
    rows = [row for row in range(len(starts)) if not (starts[row] == 0 and ends[row] == 0)]
    return rows, [span_text(tokenizer, input_ids[row], starts[row], ends[row]) for row in rows]


def compute_metrics(config, tokenizer):
    squad = load_metric("squad")

    def compute(eval_prediction: EvalPrediction) -> dict[str, float]:
        spans = np.asarray(eval_prediction.predictions)
        starts, ends = (np.asarray(labels) for labels in eval_prediction.label_ids)
        input_ids = np.asarray(eval_prediction.inputs)
        rows, references = gold_texts(tokenizer, input_ids, starts, ends)
        predictions = [span_text(tokenizer, input_ids[row], *spans[row]) for row in rows]
        scores = squad.compute(predictions=predictions, references=[[text] for text in references])
        return {**scores, "num_rows": len(rows), "num_truncated": len(starts) - len(rows)}

    return compute


def sliding_window(raw, encoded, split: str, data_args, config, tokenizer) -> dict[str, float]:
    """Rajpurkar et al. (2016): of the passage's spans as long as the median training answer (in words), the one
    whose window (the span and `width` words each side) shares the most words with the question."""
    questions, contexts = raw[split][data_args.question_column], raw[split][data_args.context_column]
    length = max(1, round(statistics.median(len(a["text"][0].split()) for a in raw["train"][data_args.answers_column])))
    width = length
    rows, references = gold_texts(
        tokenizer, encoded[split]["input_ids"], encoded[split]["start_positions"], encoded[split]["end_positions"]
    )
    predictions = []
    for row in rows:
        words = contexts[row].split()
        asked = set(re.findall(r"\w+", questions[row].lower()))
        overlap = [bool(set(re.findall(r"\w+", word.lower())) & asked) for word in words]

        def shared(i: int, overlap=overlap) -> int:
            return sum(overlap[max(0, i - width) : i + length + width])

        best = max(range(max(1, len(words) - length + 1)), key=shared)
        predictions.append(" ".join(words[best : best + length]))
    scores = load_metric("squad").compute(predictions=predictions, references=[[text] for text in references])
    return {**scores, "num_rows": len(rows)}


BASELINES = {"sliding_window": sliding_window}
