"""The image demo's data: Fashion-MNIST, shipped by Debian's `dataset-fashion-mnist` package (MIT, Zalando SE).

70,000 grey 28x28 pictures of clothes in 10 classes, 60,000 for training and 10,000 for testing, as the four idx
files of the original release. The package is fetched with `apt-get download` (no root, nothing installed on the
system) into a cache folder and unpacked with `dpkg-deb`; the dataset is written with `save_to_disk` as an
`Image` column and a `ClassLabel` label, which `training.finetune --dataset_dir` reads like any user's data.
The validation split is 6,000 training images held out with a fixed seed, stratified by class; the test split is
the package's own.
"""

import gzip
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image

from . import debian
from .common import save_splits

PACKAGE = "dataset-fashion-mnist"
LICENSE = "MIT"
SOURCE = f"Debian package {PACKAGE} (https://packages.debian.org/{PACKAGE}; Zalando SE, github.com/zalandoresearch)"
FILES = Path("usr/share/datasets/fashion-mnist")
LABELS = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
VALIDATION_SIZE = 6000
# Published test accuracies of the package's own benchmark (benchmark/baselines.json, README): the baselines too
# slow to fit here, quoted as published.
PUBLISHED = {"SVC (RBF kernel, C=10)": 0.897, "MLPClassifier (100 units)": 0.871}


def package_files(cache: Path | None = None) -> Path:
    """The unpacked package's data folder, fetched on first use."""
    return debian.unpacked(PACKAGE, FILES / "t10k-labels-idx1-ubyte.gz", cache) / FILES


def read_idx(path: Path) -> np.ndarray:
    """An idx file (gzip): a magic number giving the dimension count, the dimensions, then unsigned bytes."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def read_split(files: Path, prefix: str) -> Dataset:
    images = read_idx(files / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(files / f"{prefix}-labels-idx1-ubyte.gz")
    features = Features({"image": Image(), "label": ClassLabel(names=list(LABELS))})
    return Dataset.from_dict({"image": list(images), "label": labels.tolist()}, features=features)


def write_fashion_mnist(
    folder: Path, train_size: int | None = None, validation_size: int | None = None, seed: int = 0
) -> Path:
    """train / validation / test as a saved DatasetDict in `folder` (kept when already there); `train_size` keeps a
    stratified subset of the training images (the demo's CPU budget); the test split is the package's, whole."""
    if (folder / "dataset_dict.json").is_file():
        return folder
    files = package_files()
    held_out = read_split(files, "train").train_test_split(
        test_size=validation_size or VALIDATION_SIZE, stratify_by_column="label", seed=seed
    )
    train = held_out["train"]
    if train_size is not None and train_size < len(train):
        train = train.train_test_split(train_size=train_size, stratify_by_column="label", seed=seed)["train"]
    splits = DatasetDict({"train": train, "validation": held_out["test"], "test": read_split(files, "t10k")})
    return save_splits(splits, folder)
