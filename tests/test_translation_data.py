"""The translation demo's data: verses paired by reference, and splits by whole books (no passage leaks)."""

import pytest

from training.translation_data import TEST_BOOKS, VALIDATION_BOOKS, pair_verses, split_by_book


def verses(books, text: str) -> dict:
    return {(book, 1, verse): f"{text} {book} {verse}" for book in books for verse in (1, 2)}


BOOKS = ("Gen", "Matt", *VALIDATION_BOOKS, *TEST_BOOKS)


def test_verses_pair_by_reference_where_both_translations_have_text():
    source = verses(BOOKS, "fuente")
    del source["Gen", 1, 2]  # a verse one translation lacks
    pairs = pair_verses(source, verses(BOOKS, "target"))
    assert len(pairs) == 2 * len(BOOKS) - 1
    assert pairs[0] == {"book": "Gen", "chapter": 1, "verse": 1, "source": "fuente Gen 1", "target": "target Gen 1"}


def test_the_splits_are_whole_books_and_only_training_drops_long_verses():
    pairs = pair_verses(verses(BOOKS, "uno"), verses(BOOKS, "one"))
    pairs[0]["target"] = " ".join(["word"] * 50)  # Gen 1:1, in training
    pairs[-1]["target"] = " ".join(["word"] * 50)  # the last test book's
    splits = split_by_book(pairs, max_words=40)
    assert set(splits["test"]["book"]) == set(TEST_BOOKS) and len(splits["test"]) == 2 * len(TEST_BOOKS)
    assert set(splits["validation"]["book"]) == set(VALIDATION_BOOKS)
    assert set(splits["train"]["book"]) == {"Gen", "Matt"} and len(splits["train"]) == 3


def test_a_held_out_book_missing_from_both_translations_is_named():
    books = [book for book in BOOKS if book != "Jonah"]
    with pytest.raises(ValueError, match=r"No verse of \['Jonah'\] in both translations"):
        split_by_book(pair_verses(verses(books, "uno"), verses(books, "one")))
