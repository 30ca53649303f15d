"""Exact match and F1 of extractive answers, as the SQuAD v1.1 evaluation script scores them.

Both texts are normalised first (lower case, punctuation and the articles a/an/the removed, whitespace collapsed);
F1 is the harmonic mean of word precision and recall between the prediction and a reference. With several
references per question, the best-matching one counts. A local `evaluate` module (the Hub's cannot be downloaded
here): load it with `evaluate.load("training/metrics/squad")`. evaluate scans this file's imports, one per line.
"""

import re
import string
from collections import Counter

import datasets
import evaluate


def normalize(text: str) -> str:
    text = "".join(character for character in text.lower() if character not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def f1(prediction: str, reference: str) -> float:
    predicted, gold = normalize(prediction).split(), normalize(reference).split()
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


class Squad(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="SQuAD v1.1 exact match and F1 (in percent) of predicted answer texts.",
            citation="Rajpurkar et al. 2016, SQuAD: 100,000+ Questions for Machine Comprehension of Text.",
            inputs_description="predictions: one answer text per question; references: the list of gold answers.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
        )

    def _compute(self, predictions, references):
        exact = [max(normalize(p) == normalize(r) for r in refs) for p, refs in zip(predictions, references)]
        overlap = [max(f1(p, r) for r in refs) for p, refs in zip(predictions, references)]
        count = max(len(predictions), 1)
        return {"exact_match": 100.0 * sum(exact) / count, "f1": 100.0 * sum(overlap) / count}
