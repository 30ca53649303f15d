"""Honest baselines, scored on the same split and with the same metric modules as the model.

A Transformer's accuracy means little without them: on an imbalanced label set the majority class already
scores well, and bag-of-words features often beat a small network trained for minutes.
"""

from collections import Counter

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union

from .scoring import classification_scores

TFIDF_C_GRID = (1.0, 10.0, 100.0)


def majority_class(train_labels, test_labels, num_labels: int) -> dict[str, float]:
    """Always predict the most frequent training label."""
    majority = Counter(train_labels).most_common(1)[0][0]
    return classification_scores([majority] * len(test_labels), list(test_labels), num_labels)


def tfidf_logreg(
    train_texts, train_labels, validation_texts, validation_labels, test_texts, test_labels, num_labels: int
) -> dict[str, float]:
    """TF-IDF of word 1-2-grams and case-sensitive character 1-4-grams (which see capitals, punctuation and
    layout, as a byte-level tokenizer does), then logistic regression; C is chosen on validation macro-F1,
    as the model's best checkpoint is."""

    def fit(c: float):
        features = make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char", ngram_range=(1, 4), lowercase=False, sublinear_tf=True, min_df=2),
        )
        model = make_pipeline(features, LogisticRegression(C=c, max_iter=2000))
        return model.fit(list(train_texts), list(train_labels))

    def f1(model, texts, labels) -> float:
        return classification_scores(model.predict(list(texts)), list(labels), num_labels)["f1_macro"]

    fitted = {c: fit(c) for c in TFIDF_C_GRID}
    best_c = max(TFIDF_C_GRID, key=lambda c: f1(fitted[c], validation_texts, validation_labels))
    scores = classification_scores(fitted[best_c].predict(list(test_texts)), list(test_labels), num_labels)
    return {**scores, "C": best_c}


def unigram_perplexity(train_blocks, eval_blocks, vocab_size: int) -> float:
    """Perplexity of add-one-smoothed token frequencies on the tokens a causal LM predicts (all but each block's first)."""
    counts = np.bincount(np.concatenate([np.asarray(b) for b in train_blocks]), minlength=vocab_size) + 1.0
    log_probs = np.log(counts / counts.sum())
    predicted = np.concatenate([np.asarray(b)[1:] for b in eval_blocks])
    return float(np.exp(-log_probs[predicted].mean()))
