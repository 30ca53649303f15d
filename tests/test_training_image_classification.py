"""Image classification as a fine-tuning task: image folders in, a ViT trained from scratch (or a checkpoint
fine-tuned) with transformers' own image processor, accuracy and macro-F1 next to the baselines on the same rows
(training/tasks/image_classification.py), and bad images named before training starts."""

from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from helpers.training_data import FAST, QUADRANTS, TINY_VIT, quadrant_image, read_json, write_image_folders
from PIL import Image as PILImage
from transformers import AutoConfig, AutoImageProcessor, pipeline

from model_cards import export_run
from training import finetune
from training.common import DataError
from training.tasks.image_classification import flip_and_shift


def arguments(data: dict, out, *extra: str) -> list[str]:
    return [
        "--task", "image-classification", "--train_files", data["train"], "--validation_files", data["validation"],
        "--test_files", data["test"], "--output_dir", str(out), "--per_device_train_batch_size", "16",
        "--dataset_name", "squares", "--dataset_license", "CC0-1.0", "--do_train", "--do_predict", *FAST, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    return write_image_folders(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def classifier(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("vit")
    # A ViT from scratch finds where the square is after ~15 epochs on this data: no early stop on the plateau before.
    options = ["--preset", "vit", "--config_overrides", TINY_VIT, "--num_train_epochs", "25", "--learning_rate", "1e-3"]
    finetune.main(arguments(images, out, *options, "--augmentation", "none", "--early_stopping_patience", "0"))
    return out


def test_a_vit_trained_from_scratch_beats_the_majority_class_on_the_same_test_images(classifier):
    run_info = read_json(classifier / "run_info.json")
    assert run_info["task"] == "image-classification" and run_info["preset"] == "vit"
    assert run_info["dataset"]["labels"] == sorted(QUADRANTS)
    metrics, baselines = run_info["metrics"], run_info["baselines"]
    assert metrics["num_rows"] == 32
    assert baselines["majority_class"]["accuracy"] == pytest.approx(0.25)
    assert metrics["accuracy"] >= 0.75 > baselines["majority_class"]["accuracy"]
    assert 0.0 <= baselines["pixel_logreg"]["accuracy"] <= 1.0 and baselines["pixel_logreg"]["C"] in (0.01, 0.1, 1.0)
    assert AutoConfig.from_pretrained(classifier).architectures == ["CustomTransformerForImageClassification"]


def test_the_run_saves_transformers_own_image_processor_and_the_pipeline_names_the_classes(classifier):
    assert type(AutoImageProcessor.from_pretrained(classifier)).__name__.startswith("ViTImageProcessor")
    classify = pipeline("image-classification", model=str(classifier), trust_remote_code=True)
    picture = quadrant_image(QUADRANTS.index("south-east"), np.random.default_rng(7))
    (best, *_) = classify(picture)
    assert best["label"] in QUADRANTS and 0.0 < best["score"] <= 1.0


def test_a_fine_tuned_classifier_scores_new_images_with_its_own_labels(classifier, images, tmp_path):
    scores = finetune.main(
        ["--model_name_or_path", str(classifier), "--test_files", images["test"], "--output_dir", str(tmp_path),
         "--do_predict", *FAST]
    )  # fmt: skip
    trained = read_json(classifier / "run_info.json")["metrics"]["accuracy"]
    assert scores["test_accuracy"] == pytest.approx(trained)


def test_the_run_exports_to_a_hub_folder_with_its_image_processor_and_card(classifier, tmp_path):
    folder = export_run(classifier, tmp_path / "hub")
    assert (folder / "preprocessor_config.json").is_file() and not (folder / "tokenizer_config.json").exists()
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "Logistic regression on pixels" in card


def test_a_checkpoint_fine_tunes_on_new_labels_from_a_saved_dataset_with_a_new_head(classifier, images, tmp_path):
    def halves(folder: str) -> Dataset:  # two classes: a square in the top half, or in the bottom half
        paths = sorted(Path(folder).glob("*/*.png"))
        rows = {"image": [str(p) for p in paths], "label": [p.parent.name.split("-")[0] for p in paths]}
        features = Features({"image": Image(), "label": ClassLabel(names=["north", "south"])})
        return Dataset.from_dict(rows, features=features)

    DatasetDict({split: halves(folder) for split, folder in images.items()}).save_to_disk(tmp_path / "halves")
    scores = finetune.main(
        ["--model_name_or_path", str(classifier), "--task", "image-classification", "--dataset_dir",
         str(tmp_path / "halves"), "--output_dir", str(tmp_path / "out"), "--ignore_mismatched_sizes", "true",
         "--num_train_epochs", "2", "--do_train", "--do_predict", *FAST]
    )  # fmt: skip
    assert read_json(tmp_path / "out" / "run_info.json")["dataset"]["labels"] == ["north", "south"]
    assert read_json(tmp_path / "out" / "run_info.json")["metrics"]["num_rows"] == 32
    assert 0.0 <= scores["test_accuracy"] <= 1.0


# -- bad input ---------------------------------------------------------------------------------------------------


def test_an_image_that_does_not_decode_is_named_before_training(images, tmp_path):
    broken = write_image_folders(tmp_path / "data")
    bad = tmp_path / "data" / "train" / "north-east" / "3.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match=rf"The train split's image at {bad} \(row \d+\) does not decode"):
        finetune.main(arguments(broken, tmp_path / "out", "--preset", "vit", "--config_overrides", TINY_VIT))
    assert not (tmp_path / "out").exists()


def test_grey_images_are_read_by_an_rgb_model_and_channel_counts_other_than_grey_or_rgb_are_refused(tmp_path):
    grey = write_image_folders(tmp_path / "grey", sizes=(("train", 4), ("validation", 2), ("test", 2)))
    for path in (tmp_path / "grey").glob("*/*/*.png"):
        PILImage.open(path).convert("L").save(path)
    finetune.main(arguments(grey, tmp_path / "rgb", "--preset", "vit", "--config_overrides", TINY_VIT))
    assert read_json(tmp_path / "rgb" / "run_info.json")["metrics"]["num_rows"] == 8
    with pytest.raises(DataError, match=r"config.num_channels=2: images are read as grey \(1\) or RGB \(3\)"):
        finetune.main(
            arguments(grey, tmp_path / "two", "--preset", "vit", "--config_overrides", f"{TINY_VIT},num_channels=2")
        )


def test_labels_the_train_split_lacks_are_refused_naming_them(tmp_path):
    data = write_image_folders(tmp_path / "data", sizes=(("train", 3), ("validation", 2), ("test", 2)))
    (tmp_path / "data" / "test" / "north-west").rename(tmp_path / "data" / "test" / "centre")
    with pytest.raises(DataError, match=r"The test split has label\(s\) \['centre'\] that the train split"):
        finetune.main(arguments(data, tmp_path / "out", "--preset", "vit", "--config_overrides", TINY_VIT))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--augmentation", "rotate"], "--augmentation 'rotate' is not one of none, flip_and_shift"),
        (["--preset", "vit", "--model_name_or_path", "somewhere"], "Give exactly one of --model_name_or_path"),
        (["--preset", "vitt"], "Unknown --preset 'vitt'"),
        (
            ["--preset", "vit", "--config_overrides", "image_sise=16"],
            r"Unknown config field\(s\) in --config_overrides",
        ),
    ],
)
def test_bad_flags_are_refused_naming_the_fix(images, tmp_path, extra, message):
    if "--preset" not in extra:
        extra = ["--preset", "vit", "--config_overrides", TINY_VIT, *extra]
    with pytest.raises(DataError, match=message):
        finetune.main(arguments(images, tmp_path / "out", *extra))


def test_a_folder_without_class_subfolders_is_refused_naming_the_layout(tmp_path):
    (tmp_path / "flat").mkdir()
    quadrant_image(0, np.random.default_rng(0)).save(tmp_path / "flat" / "a.png")
    data = {"train": str(tmp_path / "flat"), "validation": str(tmp_path / "flat"), "test": str(tmp_path / "flat")}
    with pytest.raises(DataError, match="no class subfolders: put each class's images in a subfolder"):
        finetune.main(arguments(data, tmp_path / "out", "--preset", "vit", "--config_overrides", TINY_VIT))


def test_flip_and_shift_keeps_the_size_and_mode_and_moves_the_picture():
    rng = np.random.default_rng(0)
    picture = quadrant_image(0, np.random.default_rng(1))
    moved = [flip_and_shift(picture, rng) for _ in range(8)]
    assert all(image.size == picture.size and image.mode == picture.mode for image in moved)
    assert any(not np.array_equal(np.asarray(image), np.asarray(picture)) for image in moved)
    grey = picture.convert("L")
    assert flip_and_shift(grey, rng).mode == "L"
