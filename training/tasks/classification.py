"""Sequence and token classification: labels read from the data, inputs tokenized per text or per word, accuracy
and macro-F1, and the majority-class and TF-IDF baselines, scored on the same rows as the model.

What `training.finetune` asks of a task's code (`Task.code`): `read_labels`, `stratify_column`, the row's
`preprocess_function`, `INCLUDE_FOR_METRICS`, `compute_metrics`, `logits_to_predictions` and `BASELINES`.
"""

from collections import Counter

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import ClassLabel, DatasetDict, List, Value
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union
from transformers import EvalPrediction

from ..common import DataError, load_metric, map_replacing_columns
from . import Task

IGNORE_INDEX = -100  # labels the loss skips: padding, special tokens, continuation pieces of a word
INCLUDE_FOR_METRICS = ()  # what `compute_metrics` needs besides predictions and labels (Trainer's include_for_metrics)


def read_labels(raw: DatasetDict, task: Task, data_args, model_args, base_config, do_train: bool):
    """The label column as ClassLabel ids, named by the data (fine-tuning) or by the model's own labels (scoring);
    returns the splits and the config fields of a head for those labels."""
    input_column, label_column = task.column_flags(data_args)
    if not task.per_token:
        raw = raw.filter(lambda row: bool(row[input_column] and row[input_column].strip()))
    names = None if do_train else [base_config.id2label[i] for i in range(base_config.num_labels)]
    raw, names = encode_labels(raw, label_column, task.per_token, names)
    check_head_labels(base_config, task, names, model_args)
    head = {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }
    return raw, head


def stratify_column(task: Task, data_args) -> str | None:
    """The column a held-out validation split keeps the proportions of: one label per text, none per word."""
    _, label_column = task.column_flags(data_args)
    return None if task.per_token else label_column


def compute_metrics(config, tokenizer):
    return classification_metrics(config.num_labels)


def check_head_labels(base_config, task: Task, names: list[str], model_args):
    """A checkpoint that already has this task's head keeps it only for the very same labels; other labels need
    a new head, which the user asks for (`--ignore_mismatched_sizes`) rather than getting by surprise."""
    architecture = (base_config.architectures or [""])[0]
    if not architecture.endswith(task.head_suffix) or model_args.ignore_mismatched_sizes:
        return
    own = [base_config.id2label[i] for i in range(base_config.num_labels)]
    if own != names:
        raise DataError(
            f"{model_args.model_name_or_path} is a {task.pipeline_tag} model for the labels {own}, the data has "
            f"{names}. Pass --ignore_mismatched_sizes to replace its head with a new one for these labels."
        )


# -- labels ------------------------------------------------------------------------------------------------------


def encode_labels(
    splits: DatasetDict, column: str, per_token: bool, names: list[str] | None = None
) -> tuple[DatasetDict, list[str]]:
    """The label column as ClassLabel ids (a list of them per row for tokens), named by `names` (a fine-tuned
    model's labels) or else by the train split: its ClassLabel's names, or its distinct values, sorted."""
    train_feature = _label_feature(splits["train" if "train" in splits else next(iter(splits))], column, per_token)
    if names is None and isinstance(train_feature, ClassLabel):
        names = list(train_feature.names)
    as_text = {split: _label_text(dataset, column, per_token) for split, dataset in splits.items()}
    if names is None:
        values = as_text["train"].data.column(column).combine_chunks()
        names = sorted(pc.unique(pc.list_flatten(values) if per_token else values).to_pylist())
        if len(names) < 2:
            raise DataError(
                f"Column {column!r} of the train split has {len(names)} distinct label(s): need at least 2."
            )
    label = ClassLabel(names=names)
    encoded = DatasetDict()
    for split, dataset in as_text.items():
        values = dataset.data.column(column).combine_chunks()
        unknown = sorted(set(pc.unique(pc.list_flatten(values) if per_token else values).to_pylist()) - set(names))
        if unknown:
            raise DataError(
                f"The {split} split has label(s) {unknown[:10]} that the train split / model does not have "
                f"(known: {names}). Fix the data, or train on data that contains them."
            )
        encoded[split] = dataset.cast_column(column, List(label) if per_token else label)
    return encoded, names


def _label_feature(dataset, column: str, per_token: bool):
    feature = dataset.features[column]
    if per_token and not isinstance(feature, List):
        raise DataError(f"Token classification needs a list of tags per row in column {column!r}.")
    return feature.feature if per_token else feature


def _label_text(dataset, column: str, per_token: bool):
    """The labels as strings: a ClassLabel's ids become its names, integers their digits; floats are refused."""
    feature = _label_feature(dataset, column, per_token)
    as_strings = List(Value("string")) if per_token else Value("string")
    if isinstance(feature, ClassLabel):
        to_names = (lambda rows: [feature.int2str(row) for row in rows]) if per_token else feature.int2str
        features = dataset.features.copy()
        features[column] = as_strings  # else the names written back are encoded to ids again
        return dataset.map(
            lambda batch: {column: to_names(batch[column])}, batched=True, features=features, desc="Reading labels"
        )
    if not isinstance(feature, Value) or feature.dtype.startswith("float"):
        raise DataError(f"Column {column!r} holds {feature}: labels must be categories (strings or integers).")
    return dataset.cast_column(column, as_strings)


# -- inputs (the rows' `preprocess_function`) ----------------------------------------------------------------------


def tokenize_for_sequence_classification(
    splits, tokenizer, text_column, label_column, max_length, training_args, num_proc=None, **_
) -> DatasetDict:
    def encode(batch):
        return {**tokenizer(batch[text_column], truncation=True, max_length=max_length), "labels": batch[label_column]}

    with training_args.main_process_first(desc="tokenizing"):
        return map_replacing_columns(splits, encode, num_proc)


def tokenize_for_token_classification(
    splits, tokenizer, tokens_column, tags_column, max_length, training_args, num_proc=None, **_
) -> DatasetDict:
    """Words are joined with spaces and tokenized as running text (as in pre-training and in the pipeline);
    the first piece of each word (`char_to_token` of its first character) carries its tag, every other piece
    and the special tokens -100."""

    def encode(batch):
        encoded = tokenizer([" ".join(words) for words in batch[tokens_column]], truncation=True, max_length=max_length)
        labels = []
        for row, (words, tags) in enumerate(zip(batch[tokens_column], batch[tags_column])):
            row_labels, start = [IGNORE_INDEX] * len(encoded["input_ids"][row]), 0
            for word, tag in zip(words, tags):
                first_piece = encoded.char_to_token(row, start)  # None once truncation cut the word off
                if first_piece is not None:
                    row_labels[first_piece] = tag
                start += len(word) + 1
            labels.append(row_labels)
        return {**encoded, "labels": labels}

    with training_args.main_process_first(desc="tokenizing"):
        return map_replacing_columns(splits, encode, num_proc)


# -- metrics and baselines ---------------------------------------------------------------------------------------


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


def classification_metrics(num_labels: int):
    """compute_metrics for both tasks; positions labelled -100 are not scored. `num_rows` is how many labels
    were scored: under DDP it shows that padded duplicates were not counted."""
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
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def scored_labels(dataset) -> list[int]:
    labels = np.concatenate([np.atleast_1d(np.asarray(row)) for row in dataset["labels"]])
    return labels[labels != IGNORE_INDEX].tolist()


def majority_class(raw, encoded, split: str, data_args, config, tokenizer) -> dict[str, float]:
    """Always predict the most frequent training label."""
    num_labels = config.num_labels
    majority = Counter(scored_labels(encoded["train"])).most_common(1)[0][0]
    references = scored_labels(encoded[split])
    return classification_scores([majority] * len(references), references, num_labels)


TFIDF_C_GRID = (1.0, 10.0, 100.0)


def tfidf_logreg(raw, encoded, split: str, data_args, config, tokenizer) -> dict[str, float]:
    """TF-IDF of word 1-2-grams and case-sensitive character 1-4-grams (which see capitals, punctuation and
    layout, as a byte-level tokenizer does), then logistic regression; C is chosen on validation macro-F1,
    as the model's best checkpoint is."""
    text_column, num_labels = data_args.text_column, config.num_labels

    def fit(c: float):
        features = make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char", ngram_range=(1, 4), lowercase=False, sublinear_tf=True, min_df=2),
        )
        return make_pipeline(features, LogisticRegression(C=c, max_iter=2000)).fit(
            raw["train"][text_column], encoded["train"]["labels"]
        )

    def scores(model, on: str) -> dict[str, float]:
        return classification_scores(model.predict(raw[on][text_column]), encoded[on]["labels"], num_labels)

    fitted = {c: fit(c) for c in TFIDF_C_GRID}
    best_c = max(TFIDF_C_GRID, key=lambda c: scores(fitted[c], "validation")["f1_macro"])
    return {**scores(fitted[best_c], split), "C": best_c}


BASELINES = {"majority_class": majority_class, "tfidf_logreg": tfidf_logreg}  # names a Task's `baselines` lists
