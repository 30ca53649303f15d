"""Metrics for the Trainer's `compute_metrics`, through the `evaluate` modules shipped in training/metrics/.

The Hub's canonical metric scripts cannot be fetched offline and no package ships them, so the project
carries its own. They are loaded in memory (`keep_in_memory=True`): every process of a distributed run
computes on the same gathered arrays without sharing cache files.
"""

import math
from collections.abc import Callable
from pathlib import Path

import evaluate
import numpy as np
import torch
from transformers import EvalPrediction

METRICS_DIR = Path(__file__).parent / "metrics"
IGNORE_INDEX = -100  # labels the loss skips: padding, special tokens, continuation pieces of a word


def load_metric(name: str) -> evaluate.Metric:
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def classification_scores(predictions, references, num_labels: int, accuracy=None, f1=None) -> dict[str, float]:
    """Accuracy and macro-F1 over all `num_labels` classes (a class never predicted counts as F1 0)."""
    accuracy = accuracy or load_metric("accuracy")
    f1 = f1 or load_metric("f1")
    return {
        "accuracy": accuracy.compute(predictions=predictions, references=references)["accuracy"],
        "f1_macro": f1.compute(
            predictions=predictions, references=references, average="macro", labels=list(range(num_labels))
        )["f1"],
    }


def classification_metrics(num_labels: int) -> Callable[[EvalPrediction], dict[str, float]]:
    """compute_metrics for sequence and token classification; positions labelled -100 are not scored.

    `num_rows` is how many labels were scored: under DDP it shows that padded duplicates were not counted.
    """
    accuracy, f1 = load_metric("accuracy"), load_metric("f1")

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = np.asarray(eval_prediction.predictions).reshape(-1)
        references = np.asarray(eval_prediction.label_ids).reshape(-1)
        scored = references != IGNORE_INDEX
        predictions, references = predictions[scored], references[scored]
        return {**classification_scores(predictions, references, num_labels, accuracy, f1), "num_rows": len(references)}

    return compute_metrics


def logits_to_predictions(logits, labels) -> torch.Tensor:
    """Keep class ids, not logits, between evaluation batches (Trainer's preprocess_logits_for_metrics)."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")
