"""F1 score, macro-averaged over classes by default (every class counts the same, however rare).

A local `evaluate` module (the Hub's canonical metrics cannot be downloaded here): load it with
`evaluate.load("training/metrics/f1")`. evaluate scans this file's imports, one per line.
"""

import datasets
import evaluate
from sklearn.metrics import f1_score


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Harmonic mean of precision and recall, averaged over classes as `average` says.",
            citation="",
            inputs_description=(
                "predictions, references: integer class ids; average: 'macro' (default), 'micro', 'weighted' or "
                "'binary'; labels: the class ids to average over (default: those present)."
            ),
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, average="macro", labels=None, pos_label=1):
        score = f1_score(references, predictions, labels=labels, average=average, pos_label=pos_label, zero_division=0)
        return {"f1": float(score)}
