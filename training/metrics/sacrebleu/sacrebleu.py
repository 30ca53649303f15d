"""Corpus BLEU and chrF of translations against one reference each, as sacrebleu computes and reports them.

A local `evaluate` module (the Hub's canonical metrics cannot be downloaded here): load it with
`evaluate.load("training/metrics/sacrebleu")`. evaluate scans this file's imports, one per line.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU, CHRF


class SacreBLEU(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="sacrebleu's corpus BLEU (13a tokenisation, exponential smoothing) and chrF (character "
            "6-grams, beta 2), both on a 0-100 scale.",
            citation="Post, 2018. A Call for Clarity in Reporting BLEU Scores. WMT.",
            inputs_description="predictions: the translations; references: one reference translation each.",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        bleu, chrf = BLEU(), CHRF()
        return {
            "bleu": float(bleu.corpus_score(predictions, [references]).score),
            "chrf": float(chrf.corpus_score(predictions, [references]).score),
            "signature": f"{bleu.get_signature()} {chrf.get_signature()}",  # what a paper must state beside them
        }
