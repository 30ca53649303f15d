"""A real, tiny training run laid out the way the training scripts leave one (the results contract).

The Trainer trains a 2-layer, hidden-32 custom_transformer classifier for a few steps on synthetic
sentences; the output folder then holds the Trainer's own files, the saved model and tokenizer, and a
`run_info.json` with test metrics and baselines measured on the same split.
"""

import json
import random
import time
from pathlib import Path

import numpy as np
from conftest import tiny_config
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Trainer, TrainingArguments

from custom_transformer import CustomTransformerForSequenceClassification

WORDS = ["good", "bad", "film", "plot", "actor", "the", "a", "was", "very", "not", "story", "end"]
LABELS = ["negative", "positive"]


def synthetic_split(n: int, rng: random.Random) -> tuple[list[str], list[int]]:
    """Sentences labelled positive when "good" outnumbers "bad": learnable, but not by the majority class."""
    texts, labels = [], []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 10))]
        texts.append(" ".join(words))
        labels.append(int(words.count("good") > words.count("bad")))
    return texts, labels


def build_tokenizer(model_max_length: int = 16) -> PreTrainedTokenizerFast:
    vocab = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "[UNK]": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,  # the model's positions: pipelines truncate to it
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )


def classification_metrics(labels, predictions) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_macro": float(f1_score(labels, predictions, average="macro")),
    }


class Encoded:
    """A list-backed dataset of tokenized examples (the Trainer only needs `len` and indexing)."""

    def __init__(self, tokenizer, texts, labels):
        self.rows = [{**tokenizer(text), "labels": label} for text, label in zip(texts, labels)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def build_tiny_run(output_dir: Path, max_steps: int = 8) -> Path:
    """Train for `max_steps` and write everything the results contract promises into `output_dir`."""
    start = time.perf_counter()
    rng = random.Random(0)
    splits = {name: synthetic_split(n, rng) for name, n in (("train", 96), ("validation", 32), ("test", 32))}
    (output_dir / "data").mkdir(parents=True)
    for name, (texts, labels) in splits.items():
        rows = [json.dumps({"text": t, "label": LABELS[y]}) for t, y in zip(texts, labels)]
        (output_dir / "data" / f"{name}.jsonl").write_text("\n".join(rows) + "\n")

    tokenizer = build_tokenizer()
    config = tiny_config(
        "bert",
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},  # transformers 5.23 does not derive it
    )
    model = CustomTransformerForSequenceClassification(config)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        learning_rate=3e-3,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="steps",
        save_steps=max_steps,  # one checkpoint-N/ with optimizer state: export must leave it out
        report_to="none",
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
    )

    def compute_metrics(eval_pred):
        return classification_metrics(eval_pred.label_ids, np.argmax(eval_pred.predictions, axis=-1))

    data = {name: Encoded(tokenizer, *split) for name, split in splits.items()}
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data["validation"],
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    train_result = trainer.train()
    trainer.save_model()
    trainer.save_metrics("train", train_result.metrics)
    trainer.save_metrics("eval", trainer.evaluate())
    trainer.save_state()
    test_predictions = np.argmax(trainer.predict(data["test"]).predictions, axis=-1)

    train_texts, train_labels = splits["train"]
    test_texts, test_labels = splits["test"]
    majority = max(set(train_labels), key=train_labels.count)
    vectorizer = TfidfVectorizer().fit(train_texts)
    logreg = LogisticRegression().fit(vectorizer.transform(train_texts), train_labels)
    run_info = {
        "task": "text-classification",
        "preset": "bert",
        "base_model": None,
        "dataset": {
            "name": "synthetic-sentiment",
            "files": [f"data/{name}.jsonl" for name in splits],
            "license": "cc0-1.0",
            "source": "generated by tests/tiny_run.py",
            "split_sizes": {name: len(split[0]) for name, split in splits.items()},
        },
        "metrics": classification_metrics(test_labels, test_predictions),
        "baselines": {
            "majority_class": classification_metrics(test_labels, [majority] * len(test_labels)),
            "tfidf_logreg": classification_metrics(test_labels, logreg.predict(vectorizer.transform(test_texts))),
        },
        "wall_time_seconds": round(time.perf_counter() - start, 2),
        "hardware": "CPU (test machine)",
        "hyperparameters": {
            "max_steps": max_steps,
            "learning_rate": args.learning_rate,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "seed": args.seed,
            "model": {"hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers},
        },
    }
    (output_dir / "run_info.json").write_text(json.dumps(run_info, indent=2))
    return output_dir
