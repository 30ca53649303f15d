"""The README's demos, `python -m training.demo` (the main job), `python -m training.image_demo` and
`python -m training.translation_demo`, in their quick forms: every stage wired, results written."""

from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict
from helpers.training_data import read_json, sentences, translated, write_fake_fashion_mnist

from training import data, demo, image_data, image_demo, translation_data, translation_demo


def test_the_quick_demo_runs_every_stage_and_reloads_the_models_without_the_package(tmp_path, monkeypatch):
    try:
        data.fortune_dir()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    monkeypatch.chdir(tmp_path)  # outputs land in tmp_path, and run_info paths are relative to it
    results = demo.main(["--quick", "true", "--output_dir", "outputs/demo"])

    out = tmp_path / "outputs" / "demo"
    assert read_json(out / "results.json") == results
    assert set(results["classifier"]["baselines"]) == {"majority_class", "tfidf_logreg"}
    assert results["classifier"]["metrics"]["num_rows"] == results["classifier"]["dataset"]["split_sizes"]["test"]
    classifier = read_json(out / "classifier" / "run_info.json")
    assert classifier["base_model"] == "outputs/demo/pretrain"
    assert classifier["dataset"]["license"] == "BSD-3-Clause"
    assert classifier["dataset"]["files"][0] == "outputs/demo/data/classification/train.jsonl"
    assert read_json(out / "pretrain" / "run_info.json")["task"] == "text-generation"
    reload = (out / "reload.txt").read_text()
    assert "custom_transformer was never imported" in reload
    assert all(Path(p).is_absolute() is False for p in classifier["dataset"]["files"])


def test_the_quick_image_demo_trains_scores_exports_and_classifies_without_the_package(tmp_path, monkeypatch):
    """On a fake Fashion-MNIST package in the Debian cache (the real one is fetched by `make demo-images`)."""
    monkeypatch.setenv("CT_DEBIAN_CACHE", str(tmp_path / "cache"))
    write_fake_fashion_mnist(tmp_path / "cache")
    monkeypatch.setattr(image_data, "VALIDATION_SIZE", 50)
    monkeypatch.chdir(tmp_path)
    results = image_demo.main(["--quick", "true", "--output_dir", "outputs/image-demo"])

    out = tmp_path / "outputs" / "image-demo"
    assert set(results["baselines"]) == {"majority_class", "pixel_logreg"}
    assert results["metrics"]["num_rows"] == results["dataset"]["split_sizes"]["test"] == 50
    assert results["dataset"]["license"] == "MIT" and results["published_baselines"] == image_data.PUBLISHED
    assert (out / "hub" / "classifier" / "preprocessor_config.json").is_file()
    reload = (out / "reload.txt").read_text()
    assert "custom_transformer was never imported" in reload
    assert reload.count(".png") == image_demo.SAMPLES


def fake_bible_pairs(folder: Path):
    """What translation_data writes, from the toy language instead of the Debian SWORD modules (the real ones are
    fetched by `make demo-translation`): held-out books by name, as the splits by book have them."""
    books = {
        "train": ["Gen"],
        "validation": list(translation_data.VALIDATION_BOOKS),
        "test": list(translation_data.TEST_BOOKS),
    }
    splits = {}
    for seed, (split, n) in enumerate((("train", 120), ("validation", 9), ("test", 12))):
        rows = [
            {
                "book": books[split][i % len(books[split])],
                "chapter": 1,
                "verse": i + 1,
                "source": text,
                "target": translated(text),
            }
            for i, text in enumerate(sentences(n, seed + 40))
        ]
        splits[split] = Dataset.from_list(rows)
    DatasetDict(splits).save_to_disk(folder)


def test_the_quick_translation_demo_trains_scores_exports_and_translates_without_the_package(tmp_path, monkeypatch):
    fake_bible_pairs(tmp_path / "outputs" / "translation-demo" / "data")  # kept: write_bible_pairs finds it there
    monkeypatch.chdir(tmp_path)
    results = translation_demo.main(["--quick", "true", "--output_dir", "outputs/translation-demo"])

    out = tmp_path / "outputs" / "translation-demo"
    assert set(results["baselines"]) == {"copy_source", "nearest_neighbour", "word_by_word"}
    assert results["metrics"]["num_rows"] == results["dataset"]["split_sizes"]["test"] == 12
    assert results["dataset"]["license"] == "Public domain"
    assert (out / "hub" / "translator" / "pipeline_custom_transformer.py").is_file()
    reload = (out / "reload.txt").read_text()
    assert "custom_transformer was never imported" in reload
    assert reload.count("->") == translation_demo.SAMPLES and "Seq2SeqGenerationPipeline" in reload
