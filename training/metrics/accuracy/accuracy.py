"""Accuracy: the fraction of predictions equal to their reference.

A local `evaluate` module (the Hub's canonical metrics cannot be downloaded here): load it with
`evaluate.load("training/metrics/accuracy")`. evaluate scans this file's imports, one per line.
"""

import datasets
import evaluate
import numpy as np


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Fraction of predictions that equal their reference.",
            citation="",
            inputs_description="predictions, references: integer class ids of the same length.",
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, sample_weight=None):
        correct = np.asarray(predictions) == np.asarray(references)
        if not len(correct):
            return {"accuracy": float("nan")}
        return {"accuracy": float(np.average(correct, weights=sample_weight))}
