"""From raw splits to model inputs: packed LM blocks, and labelled sequences or tokens.

Shared by the training scripts and `evaluate_model`, so a checkpoint is scored on inputs built exactly as in
training. All work runs through `Dataset.map(batched=True, num_proc=...)`, under
`main_process_first` so that in a distributed run one process tokenizes and the others read its cache.
"""

from itertools import chain

import numpy as np
from datasets import ClassLabel, DatasetDict, Sequence
from transformers import TrainingArguments

from .loading import DataError
from .scoring import IGNORE_INDEX


def drop_empty_texts(splits: DatasetDict, text_column: str, num_proc: int | None) -> DatasetDict:
    return splits.filter(lambda row: bool(row[text_column] and row[text_column].strip()), num_proc=num_proc)


def tokenize_into_blocks(
    splits: DatasetDict,
    tokenizer,
    text_column: str,
    block_size: int,
    training_args: TrainingArguments,
    num_proc: int | None = None,
) -> DatasetDict:
    """Tokenize every document (<s> ... </s>), concatenate, and cut into `block_size` blocks, dropping the tail."""
    eos_id = tokenizer.eos_token_id

    def tokenize(batch):
        # Only ids: the masked-LM collator finds special tokens by id, and every block is all attention.
        encoded = tokenizer(batch[text_column], return_attention_mask=False)
        return {"input_ids": [ids + [eos_id] for ids in encoded["input_ids"]]}

    def group(batch):
        concatenated = {key: list(chain.from_iterable(batch[key])) for key in batch}
        usable = len(concatenated["input_ids"]) // block_size * block_size
        return {
            key: [ids[i : i + block_size] for i in range(0, usable, block_size)] for key, ids in concatenated.items()
        }

    with training_args.main_process_first(desc="tokenizing and packing"):
        splits = drop_empty_texts(splits, text_column, num_proc)
        tokenized = _map_replacing_columns(splits, tokenize, num_proc)
        blocks = tokenized.map(group, batched=True, num_proc=num_proc, desc=f"Packing into blocks of {block_size}")
    for split, dataset in blocks.items():
        if len(dataset) == 0:
            n_tokens = sum(len(ids) for ids in tokenized[split]["input_ids"])
            raise DataError(
                f"The {split} split holds {n_tokens} tokens, fewer than one block of --block_size {block_size}: "
                "give more text or a smaller --block_size."
            )
    return blocks


def label_names(splits: DatasetDict, column: str, per_token: bool) -> list[str]:
    """The label set, read from the data: a ClassLabel's names, else the sorted distinct values of train."""
    feature = splits["train"].features[column]
    inner = feature.feature if per_token and isinstance(feature, Sequence) else feature
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    values = splits["train"][column]
    if per_token:
        if values and not isinstance(values[0], list):
            raise DataError(f"Token classification needs a list of tags per row in column {column!r}.")
        values = chain.from_iterable(values)
    distinct = set(values)
    if any(isinstance(v, float) for v in distinct):
        raise DataError(f"Column {column!r} holds floats: labels must be categories (strings or integers).")
    names = [str(v) for v in sorted(distinct)]
    if len(names) < 2:
        raise DataError(f"Column {column!r} of the train split has {len(names)} distinct label(s): need at least 2.")
    return names


def check_known_labels(splits: DatasetDict, column: str, label2id: dict[str, int], per_token: bool):
    """Labels the model has no output for cannot be scored: name them before training."""
    for split, dataset in splits.items():
        feature = dataset.features[column]
        inner = feature.feature if per_token and isinstance(feature, Sequence) else feature
        if isinstance(inner, ClassLabel):
            values = set(inner.names)
        else:
            values = dataset[column]
            values = {str(v) for v in (chain.from_iterable(values) if per_token else values)}
        unknown = sorted(values - set(label2id))
        if unknown:
            raise DataError(
                f"The {split} split has label(s) {unknown[:10]} that the train split / model does not have "
                f"(known: {sorted(label2id)}). Fix the data, or train on data that contains them."
            )


def tokenize_for_sequence_classification(
    splits: DatasetDict,
    tokenizer,
    text_column: str,
    label_column: str,
    label2id: dict[str, int],
    max_length: int,
    training_args: TrainingArguments,
    num_proc: int | None = None,
) -> DatasetDict:
    def encode(batch):
        encoded = tokenizer(batch[text_column], truncation=True, max_length=max_length)
        encoded["labels"] = [label2id[name] for name in batch["_label_name"]]
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        splits = _with_label_names(splits, label_column, per_token=False, num_proc=num_proc)
        return _map_replacing_columns(splits, encode, num_proc)


def tokenize_for_token_classification(
    splits: DatasetDict,
    tokenizer,
    tokens_column: str,
    tags_column: str,
    label2id: dict[str, int],
    max_length: int,
    training_args: TrainingArguments,
    num_proc: int | None = None,
) -> DatasetDict:
    """Words are joined with spaces and tokenized as running text (as in pre-training and in the pipeline);
    the first piece of each word carries its tag, the other pieces and special tokens -100."""

    def encode(batch):
        texts, word_of_char = [], []
        for words in batch[tokens_column]:
            texts.append(" ".join(words))
            word_of_char.append(np.repeat(np.arange(len(words)), [len(w) + 1 for w in words]))
        encoded = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
        labels = []
        for offsets, words, tags in zip(encoded["offset_mapping"], word_of_char, batch["_label_name"]):
            row, previous = [], None
            for start, end in offsets:
                word = words[end - 1] if end > start else None
                row.append(label2id[tags[word]] if word is not None and word != previous else IGNORE_INDEX)
                previous = word if word is not None else previous
            labels.append(row)
        encoded["labels"] = labels
        encoded.pop("offset_mapping")
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        splits = _with_label_names(splits, tags_column, per_token=True, num_proc=num_proc)
        return _map_replacing_columns(splits, encode, num_proc)


def _with_label_names(splits: DatasetDict, column: str, per_token: bool, num_proc: int | None) -> DatasetDict:
    """A `_label_name` column of label strings, whatever the stored type (ClassLabel ids, ints, strings)."""
    out = DatasetDict()
    for split, dataset in splits.items():
        feature = dataset.features[column]
        inner = feature.feature if per_token and isinstance(feature, Sequence) else feature
        names = inner.names if isinstance(inner, ClassLabel) else None

        def to_names(batch, names=names):
            name = (lambda v: names[v]) if names else str
            values = batch[column]
            return {
                "_label_name": [[name(v) for v in row] for row in values] if per_token else [name(v) for v in values]
            }

        out[split] = dataset.map(to_names, batched=True, num_proc=num_proc, desc="Reading labels")
    return out


def _map_replacing_columns(splits: DatasetDict, function, num_proc: int | None) -> DatasetDict:
    """Apply a batched tokenizing `function`; each split drops its own raw columns (they may differ by file)."""
    return DatasetDict(
        {
            split: dataset.map(
                function, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc="Tokenizing"
            )
            for split, dataset in splits.items()
        }
    )
