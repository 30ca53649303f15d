"""Reading the user's data with `datasets`, and the checks that must fail before training starts, not an hour in.

Every check raises `DataError` with a message that names the problem and the fix.
"""

import os
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

# File suffix -> `datasets` builder.
BUILDERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DataError(ValueError):
    """The data, paths or tokenizer given to a script cannot work; raised before any training step."""


def load_splits(
    files: dict[str, list[str] | None],
    dataset_dir: str | None = None,
    text_sample_by: str = "paragraph",
) -> DatasetDict:
    """The splits named in `files` (e.g. {"train": [...], "validation": None}), or a `save_to_disk` folder.

    `text_sample_by` applies to .txt files only: "line", "paragraph" (blank-line separated) or "document".
    """
    if dataset_dir is not None:
        return _load_saved(dataset_dir)
    if not any(files.values()):
        raise DataError("No data given: pass data files (txt/json/jsonl/csv/parquet) or --dataset_dir.")
    splits = DatasetDict()
    for split, paths in files.items():
        if paths:
            splits[split] = _load_files(split, paths, text_sample_by)
    return splits


def _load_files(split: str, paths: list[str], text_sample_by: str) -> Dataset:
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{split} file {path} does not exist (current directory: {os.getcwd()}).")
        if _is_blank(Path(path)):
            raise DataError(f"{split} file {path} is empty: the {split} split would have 0 rows.")
    suffixes = {Path(p).suffix.lower() for p in paths}
    unknown = suffixes - set(BUILDERS)
    if unknown:
        raise DataError(
            f"{split} files have unsupported suffix {', '.join(sorted(unknown))}. "
            f"Use one of {', '.join(BUILDERS)}, or save a dataset with Dataset.save_to_disk and pass --dataset_dir."
        )
    builders = {BUILDERS[s] for s in suffixes}
    if len(builders) > 1:
        raise DataError(f"{split} files mix formats ({', '.join(sorted(suffixes))}): give one format per split.")
    builder = builders.pop()
    kwargs = {"sample_by": text_sample_by} if builder == "text" else {}
    try:
        return load_dataset(builder, data_files={split: paths}, split=split, **kwargs)
    except Exception as error:  # datasets' messages do not say which file or flag is at fault
        raise DataError(
            f"Could not read the {split} files {paths} as {builder} data ({type(error).__name__}: {error}). "
            "Check that every file is valid and that they all share the same columns."
        ) from error


def _is_blank(path: Path) -> bool:
    with path.open("rb") as f:
        return not f.read(1 << 16).strip() and path.stat().st_size <= 1 << 16


def _load_saved(dataset_dir: str) -> DatasetDict:
    path = Path(dataset_dir)
    if not path.is_dir():
        raise DataError(f"--dataset_dir {dataset_dir} does not exist (current directory: {os.getcwd()}).")
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise DataError(
            f"--dataset_dir {dataset_dir} is not a dataset saved with save_to_disk (no dataset_dict.json or "
            "state.json). Pass data files with --train_files instead."
        )
    loaded = load_from_disk(str(path))
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def require_rows(splits: DatasetDict, names: list[str]):
    for name in names:
        if name in splits and len(splits[name]) == 0:
            raise DataError(f"The {name} split is empty (0 rows): check the file or the filter that produced it.")


def require_columns(splits: DatasetDict, columns: dict[str, str]):
    """`columns` maps a column name to the flag that chooses it, so the error can name the fix."""
    for split, dataset in splits.items():
        for column, flag in columns.items():
            if column not in dataset.column_names:
                raise DataError(
                    f"The {split} split has no column {column!r}; its columns are {dataset.column_names}. "
                    f"Rename the column in the data or pass {flag} <one of those>."
                )


def add_validation_split(splits: DatasetDict, percentage: float, seed: int) -> DatasetDict:
    """Carve a validation split out of train when none was given."""
    if "validation" in splits or percentage <= 0:
        return splits
    n_train = len(splits["train"])
    if round(n_train * percentage / 100) < 1:
        raise DataError(
            f"The train split has {n_train} rows, too few to hold out {percentage}% for validation: "
            "pass --validation_files, or raise --validation_split_percentage."
        )
    parts = splits["train"].train_test_split(test_size=percentage / 100, seed=seed)
    splits["train"], splits["validation"] = parts["train"], parts["test"]
    return splits


def check_tokenizer_fits(tokenizer, vocab_size: int, model_source: str, tokenizer_source: str):
    """A tokenizer that emits ids the embedding table does not have fails deep in forward with an index error."""
    if len(tokenizer) > vocab_size:
        raise DataError(
            f"Tokenizer/model vocabulary mismatch: the tokenizer from {tokenizer_source} has {len(tokenizer)} tokens "
            f"but the model from {model_source} embeds only vocab_size={vocab_size}. Use the tokenizer the model "
            "was trained with (it is saved next to every checkpoint), or build the model with "
            f"vocab_size >= {len(tokenizer)}."
        )
