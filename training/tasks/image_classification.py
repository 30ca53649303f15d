"""Image classification: images decoded and checked once, augmented while training, prepared by transformers' own
image processor; accuracy and macro-F1 next to the majority-class and pixel logistic-regression baselines.

What `training.finetune` asks of a task's code (see classification.py) is here too; the metrics and the label
reading are the text classifier's. Images come as a `datasets` `Image` column: from an image folder (one subfolder
per class: `--train_files images/train`), from parquet, or from a dataset saved with `save_to_disk`.
"""

import io
import warnings

import numpy as np
import PIL.Image
from datasets import DatasetDict
from datasets import Image as ImageFeature
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from custom_transformer.configuration_custom_transformer import image_pair

from ..common import DataError
from . import Task
from .classification import check_head_labels, classification_metrics, classification_scores, encode_labels
from .classification import logits_to_predictions as logits_to_predictions

INCLUDE_FOR_METRICS = ()
CHANNEL_MODES = {1: "L", 3: "RGB"}  # config.num_channels -> the PIL mode images are converted to
AUGMENTATIONS = ("none", "flip_and_shift")


def read_labels(raw: DatasetDict, task: Task, data_args, model_args, base_config, do_train: bool):
    """Every image decoded once (a file that is not an image is named now, not mid-training), then the labels as
    ClassLabel ids, as for text; returns the splits and the config fields of a head for those labels."""
    image_column, label_column = task.column_flags(data_args)
    raw = DatasetDict({split: _check_images(dataset, split, image_column) for split, dataset in raw.items()})
    names = None if do_train else [base_config.id2label[i] for i in range(base_config.num_labels)]
    raw, names = encode_labels(raw, label_column, per_token=False, names=names)
    check_head_labels(base_config, task, names, model_args)
    return raw, {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {n: i for i, n in enumerate(names)},
    }


def stratify_column(task: Task, data_args) -> str:
    """A held-out validation split keeps the label proportions of train."""
    _, label_column = task.column_flags(data_args)
    return label_column


def compute_metrics(config, processor):
    return classification_metrics(config.num_labels)


# -- images ------------------------------------------------------------------------------------------------------


def _check_images(dataset, split: str, column: str):
    """The column as undecoded images (bytes or path), every one opened and verified; the first that fails is named
    with its row and file."""
    try:
        dataset = dataset.cast_column(column, ImageFeature(decode=False))
    except (ValueError, TypeError) as error:
        raise DataError(
            f"Column {column!r} of the {split} split holds {dataset.features[column]}, not images: pass image files "
            "(an image folder, or parquet / a saved dataset with an Image column), or name the image column with "
            f"--image_column ({type(error).__name__}: {error})."
        ) from None
    images = (image for batch in dataset.select_columns([column]).iter(batch_size=1024) for image in batch[column])
    for row, image in enumerate(images):
        try:
            _open(image).verify()
        except Exception as error:  # PIL raises many kinds; all mean the same to the user
            where = image.get("path") or f"row {row}"
            raise DataError(
                f"The {split} split's image at {where} (row {row}) does not decode ({type(error).__name__}: {error}): "
                "replace or remove the file."
            ) from None
    return dataset


def _open(image: dict) -> PIL.Image.Image:
    return PIL.Image.open(io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"])


def as_model_mode(image: dict, num_channels: int) -> PIL.Image.Image:
    """An undecoded image, decoded in the mode of the model's channels (grey, RGB): colour is dropped or added."""
    return _open(image).convert(CHANNEL_MODES[num_channels])


def flip_and_shift(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    """A random horizontal flip and a shift by up to 1/8 of each side, the borders filled with the edge pixels."""
    if rng.random() < 0.5:
        image = image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
    width, height = image.size
    dx, dy = (int(rng.integers(-(side // 8), side // 8 + 1)) for side in (width, height))
    padded = np.pad(np.asarray(image), [(abs(dy),) * 2, (abs(dx),) * 2] + [(0, 0)] * (image.mode != "L"), "edge")
    top, left = abs(dy) + dy, abs(dx) + dx
    return PIL.Image.fromarray(padded[top : top + height, left : left + width])


# -- inputs (the row's `preprocess_function`) --------------------------------------------------------------------


def transform_for_image_classification(
    splits, image_processor, image_column, label_column, training_args, config, data_args, **_
) -> DatasetDict:
    """Each split prepared as it is read (`with_transform`): decoded in the model's channels, augmented in the
    train split only, then resized and normalised by the image processor."""
    if config.num_channels not in CHANNEL_MODES:
        raise DataError(
            f"config.num_channels={config.num_channels}: images are read as grey (1) or RGB (3) pictures. Build the "
            "model with num_channels 1 or 3, or pass pixel_values yourself."
        )
    if data_args.augmentation not in AUGMENTATIONS:
        raise DataError(f"--augmentation {data_args.augmentation!r} is not one of {', '.join(AUGMENTATIONS)}.")
    training_args.remove_unused_columns = False  # the transform reads the image column the model does not take
    rng = np.random.default_rng(training_args.seed)

    def transform(augment: bool):
        def prepare(batch):
            images = [as_model_mode(image, config.num_channels) for image in batch[image_column]]
            if augment:
                images = [flip_and_shift(image, rng) for image in images]
            pixel_values = image_processor(images, return_tensors="pt")["pixel_values"]
            return {"pixel_values": pixel_values, "labels": batch[label_column]}

        return prepare

    augment = data_args.augmentation != "none"
    return DatasetDict(
        {split: dataset.with_transform(transform(augment and split == "train")) for split, dataset in splits.items()}
    )


# -- baselines ---------------------------------------------------------------------------------------------------


def _pixels(dataset, data_args, config) -> tuple[np.ndarray, np.ndarray]:
    """Every image at the model's size and channels, as a row of pixels in [0, 1]; and the labels."""
    size = tuple(reversed(image_pair(config.image_size)))  # PIL takes (width, height)
    images = dataset.with_format(None)[data_args.image_column]
    rows = [
        np.asarray(as_model_mode(image, config.num_channels).resize(size), np.float32).ravel() / 255 for image in images
    ]
    return np.stack(rows), np.asarray(dataset.with_format(None)[data_args.label_column])


def majority_class(raw, encoded, split: str, data_args, config, processor) -> dict[str, float]:
    """Always predict the most frequent training label."""
    train_labels = np.asarray(raw["train"][data_args.label_column])
    references = raw[split][data_args.label_column]
    majority = int(np.bincount(train_labels).argmax())
    return classification_scores([majority] * len(references), references, config.num_labels)


PIXEL_C_GRID = (0.01, 0.1, 1.0)


def pixel_logreg(raw, encoded, split: str, data_args, config, processor) -> dict[str, float]:
    """Logistic regression on standardised pixels at the model's image size (the linear classifier of
    Fashion-MNIST's benchmark); C is chosen on validation macro-F1, as the model's best checkpoint is."""
    features = {name: _pixels(raw[name], data_args, config) for name in {"train", "validation", split}}

    def fit(c: float):
        with warnings.catch_warnings(record=True) as caught:  # recorded in the result, not printed mid-run
            warnings.simplefilter("always", ConvergenceWarning)
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=500)).fit(*features["train"])
        return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def scores(model, on: str) -> dict[str, float]:
        pixels, labels = features[on]
        return classification_scores(model.predict(pixels), labels, config.num_labels)

    fitted = {c: fit(c) for c in PIXEL_C_GRID}
    best_c = max(PIXEL_C_GRID, key=lambda c: scores(fitted[c][0], "validation")["f1_macro"])
    model, converged = fitted[best_c]
    return {**scores(model, split), "C": best_c, "converged": converged}


BASELINES = {"majority_class": majority_class, "pixel_logreg": pixel_logreg}
