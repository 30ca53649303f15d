"""Real parallel text for the translation path: the Bible in Spanish (Reina-Valera 1909) and English (World English
Bible), both public domain, shipped by Debian's `sword-text-sparv` and `sword-text-web` and read with `pysword`.

Verses are paired by reference (book, chapter, verse) where both translations have text. The splits are whole
books, never verses drawn at random: the Bible repeats itself across books (Kings and Chronicles, the synoptic
Gospels, Ephesians and Colossians), so a random split would put a passage in training and its near-copy in the
test. The held-out books have no parallel elsewhere.
"""

from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict

from . import debian
from .common import save_splits

LICENSE = "Public domain (texts); Debian packaging GPL-2+"
SWORD_ROOT = Path("usr/share/sword")


@dataclass(frozen=True)
class Translation:
    package: str  # the Debian package
    module: str  # its SWORD module
    name: str


SOURCE = Translation("sword-text-sparv", "spaRV1909eb", "Reina-Valera 1909 (Spanish)")
TARGET = Translation("sword-text-web", "engWEB2015eb", "World English Bible (English)")
SOURCE_TEXT = f"Debian packages {SOURCE.package} and {TARGET.package} (SWORD modules {SOURCE.module}, {TARGET.module})"
# Whole books held out (OSIS names), none with a parallel passage in another book.
TEST_BOOKS = ("Ruth", "Jonah", "Jas", "1John")
VALIDATION_BOOKS = ("Hab", "Titus", "Phlm")

Reference = tuple[str, int, int]  # (OSIS book, chapter, verse)


def read_verses(sword_root: Path, module: str) -> dict[Reference, str]:
    """Every verse of a SWORD Bible module with text, keyed by reference, whitespace collapsed."""
    from pysword.modules import SwordModules

    modules = SwordModules(str(sword_root))
    modules.parse_modules()
    bible = modules.get_bible_from_module(module)
    verses = {}
    for testament in bible.get_structure().get_books().values():
        for book in testament:
            for chapter, length in enumerate(book.chapter_lengths, start=1):
                for verse in range(1, length + 1):
                    text = " ".join(bible.get(books=[book.name], chapters=[chapter], verses=[verse]).split())
                    if text:
                        verses[book.osis_name, chapter, verse] = text
    return verses


def pair_verses(source: dict[Reference, str], target: dict[Reference, str]) -> list[dict]:
    """{"book", "chapter", "verse", "source", "target"} for every reference both translations have, in order."""
    return [
        {"book": book, "chapter": chapter, "verse": verse, "source": source[book, chapter, verse], "target": text}
        for (book, chapter, verse), text in target.items()
        if (book, chapter, verse) in source
    ]


def split_by_book(pairs: list[dict], max_words: int | None = None) -> DatasetDict:
    """train / validation / test by whole books (`VALIDATION_BOOKS`, `TEST_BOOKS`); pairs longer than `max_words` on
    either side are left out of training only (the held-out books are scored whole)."""

    def short(pair: dict) -> bool:
        return max_words is None or max(len(pair["source"].split()), len(pair["target"].split())) <= max_words

    held_out = {"validation": VALIDATION_BOOKS, "test": TEST_BOOKS}
    splits = {name: [p for p in pairs if p["book"] in books] for name, books in held_out.items()}
    kept = set(VALIDATION_BOOKS) | set(TEST_BOOKS)
    splits["train"] = [p for p in pairs if p["book"] not in kept and short(p)]
    missing = [book for book in kept if not any(p["book"] == book for p in pairs)]
    if missing:
        raise ValueError(f"No verse of {missing} in both translations: the held-out books must exist in both.")
    return DatasetDict({name: Dataset.from_list(splits[name]) for name in ("train", "validation", "test")})


def write_bible_pairs(folder: Path, max_words: int | None = None, cache: Path | None = None) -> Path:
    """The splits as a saved DatasetDict in `folder` (kept when already there), for `finetune --dataset_dir`."""
    if (folder / "dataset_dict.json").is_file():
        return folder
    verses = {
        side: read_verses(debian.unpacked(t.package, SWORD_ROOT / "mods.d", cache) / SWORD_ROOT, t.module)
        for side, t in (("source", SOURCE), ("target", TARGET))
    }
    splits = split_by_book(pair_verses(verses["source"], verses["target"]), max_words)
    return save_splits(splits, folder)
