"""The demo's fortune datasets: parsing the strfile format, a fixed stratified split, no test text in pre-training."""

import json
from pathlib import Path

import pytest

from training import data

ENTRY = "Line one\nline two"


def write_fortune_dir(folder: Path, per_category: int = 20) -> Path:
    """A fortune folder laid out like the wheel's: one strfile-format file per category."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [f for name in data.CATEGORIES for f in data.CATEGORIES[name]] + list(data.LM_ONLY_FILES)
    for name in files:
        entries = [f"{name} fortune {i}\n\tindented" for i in range(per_category)]
        (folder / name).write_text("%% $FreeBSD$\n%\n" + "\n%\n".join(entries) + "\n%\n")
    return folder


def test_fortune_files_split_on_percent_lines_without_comments_or_overstrike(tmp_path):
    path = tmp_path / "cookies"
    path.write_text(f"%%$FreeBSD$\n%\n{ENTRY}\n%\n\n%\nB\bBold and _\bu_\bn_\bd_\be_\br_\bl_\bi_\bn_\be_\bd\n%\n")
    assert data.read_fortunes(path) == [ENTRY, "Bold and underlined"]


def test_the_classification_split_is_fixed_by_the_seed_stratified_and_disjoint(tmp_path):
    folder = write_fortune_dir(tmp_path / "fortune")
    splits = data.classification_splits(folder, seed=0)
    assert splits["train"]["text"] == data.classification_splits(folder, seed=0)["train"]["text"]
    assert splits["train"]["text"] != data.classification_splits(folder, seed=1)["train"]["text"]

    texts = {name: set(split["text"]) for name, split in splits.items()}
    assert not texts["train"] & texts["validation"] and not texts["train"] & texts["test"]
    assert not texts["validation"] & texts["test"]
    names = splits["train"].features["label"].names
    assert names == ["limerick", "murphy", "startrek", "zippy"]
    # 70/15/15 within each category; limerick reads two files (limerick, gerrold.limerick), so 40 rows.
    expected = {
        "train": {"limerick": 28, "murphy": 14, "startrek": 14, "zippy": 14},
        "validation": {"limerick": 6, "murphy": 3, "startrek": 3, "zippy": 3},
        "test": {"limerick": 6, "murphy": 3, "startrek": 3, "zippy": 3},
    }
    for name, split in splits.items():
        assert {label: split["label"].count(i) for i, label in enumerate(names)} == expected[name]
    assert len(splits["train"]) + len(splits["validation"]) + len(splits["test"]) == 5 * 20


def test_pretraining_text_leaves_out_the_classifiers_validation_and_test_texts(tmp_path):
    folder = write_fortune_dir(tmp_path / "fortune")
    files = data.write_demo_data(tmp_path / "out", seed=0, folder=folder)
    read = lambda path: [json.loads(line) for line in Path(path).read_text().splitlines()]  # noqa: E731
    held_out = {row["text"] for split in ("validation", "test") for row in read(files["classification"][split])}
    lm_texts = {row["text"] for split in ("train", "validation") for row in read(files["language_modeling"][split])}
    assert held_out and not held_out & lm_texts
    assert len(lm_texts) == 6 * 20 - len(held_out)  # every other fortune, "fortunes" file included
    assert {row["label"] for row in read(files["classification"]["train"])} == set(data.CATEGORIES)


def test_the_installed_wheel_gives_four_categories_of_real_fortunes():
    try:
        folder = data.fortune_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    splits = data.classification_splits(folder, seed=0)
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {"train": 1663, "validation": 357, "test": 357}
    assert not any("\b" in text for text in splits["train"]["text"])
