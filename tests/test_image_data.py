"""The image demo's data (training/image_data.py): Fashion-MNIST's idx files, as Debian's package ships them, read
into train / validation / test with the class names. Tested on idx files written here, in the package's layout."""

import numpy as np
import pytest
from helpers.training_data import write_fake_fashion_mnist, write_idx

from training import image_data


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A cache holding an unpacked package with 200 training and 50 test pictures, 20 and 5 of each class."""
    monkeypatch.setenv("CT_DEBIAN_CACHE", str(tmp_path / "cache"))
    return write_fake_fashion_mnist(tmp_path / "cache")


def test_idx_files_read_back_as_the_arrays_written(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(image_data.read_idx(tmp_path / "a.gz"), array)


def test_the_splits_are_the_packages_pictures_with_the_class_names_validation_held_out_by_class(package, tmp_path):
    folder = image_data.write_fashion_mnist(tmp_path / "data", train_size=100, validation_size=50)
    from datasets import load_from_disk

    splits = load_from_disk(str(folder))
    assert {split: len(dataset) for split, dataset in splits.items()} == {"train": 100, "validation": 50, "test": 50}
    assert splits["train"].features["label"].names == list(image_data.LABELS)
    assert sorted(np.bincount(splits["validation"]["label"])) == [5] * 10  # stratified
    picture = splits["test"][3]
    assert picture["image"].size == (28, 28) and picture["label"] == 3
    assert np.asarray(picture["image"]).flat[0] % 10 == 3  # the pixels of test picture 3, as written
    assert not list(tmp_path.glob(".data.*")), "the staging folder was left behind"


def test_a_written_dataset_is_kept_and_not_fetched_again(package, tmp_path, monkeypatch):
    folder = image_data.write_fashion_mnist(tmp_path / "data", validation_size=50)
    monkeypatch.setattr(image_data, "package_files", lambda: pytest.fail("fetched again"))
    assert image_data.write_fashion_mnist(folder) == folder
