"""The image path on real pictures, in one command: `python -m training.image_demo`.

1. Fashion-MNIST from Debian's `dataset-fashion-mnist` (MIT), fetched with `apt-get download` into a cache and
   written as a dataset under outputs/image-demo/data/ (training/image_data.py);
2. a small Vision Transformer (the `vit` preset, 4x4 patches of the 28x28 grey pictures) trained from scratch by
   `training.finetune` on its config file, training/configs/image_demo/finetune.yaml;
3. the test split next to the majority class and logistic regression on pixels, fitted on the same split, and the
   package's published SVC and MLP numbers (too slow to fit here, quoted as published): outputs/image-demo/results.json;
4. the run's model card and a hub-ready folder with transformers' own image processor;
5. in a fresh interpreter where `import custom_transformer` fails, the hub-ready folder classifies test pictures
   through `pipeline("image-classification", trust_remote_code=True)`.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from datasets import load_from_disk
from transformers import HfArgumentParser

from . import finetune, image_data
from .demo import card_and_hub_folder, moved, record_results, run_without_package, write_results
from .run_record import RunRecord

CONFIGS = Path(__file__).parent / "configs" / "image_demo"
CONFIGURED_ROOT = "outputs/image-demo"
TRAIN_SIZE = 54000  # every training picture the validation split leaves
SAMPLES = 8  # test pictures the reloaded model classifies


@dataclass
class ImageDemoArguments:
    output_dir: str = field(default=CONFIGURED_ROOT, metadata={"help": "Where everything is written."})
    quick: bool = field(default=False, metadata={"help": "A tiny model on 2,000 pictures: checks the wiring only."})


def stage(number: int, title: str):
    print(f"\n{'=' * 100}\n[{number}/5] {title}\n{'=' * 100}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    (args,) = HfArgumentParser(ImageDemoArguments).parse_args_into_dataclasses(args=argv)
    out = Path(args.output_dir)
    quick = yaml.safe_load((CONFIGS / "quick.yaml").read_text(encoding="utf-8")) if args.quick else {}
    timings = {}

    stage(1, f"Data: Fashion-MNIST from the Debian package {image_data.PACKAGE} ({image_data.LICENSE})")
    t = time.perf_counter()
    data_dir = image_data.write_fashion_mnist(out / "data", train_size=quick.get("train_size", TRAIN_SIZE))
    splits = load_from_disk(str(data_dir))
    print({split: len(dataset) for split, dataset in splits.items()}, f"pictures in {data_dir}")
    timings["data"] = time.perf_counter() - t

    stage(2, "Training a small Vision Transformer from scratch, then the baselines")
    t = time.perf_counter()
    path = CONFIGS / "finetune.yaml"
    configured = yaml.safe_load(path.read_text(encoding="utf-8"))
    overridden = {**configured, **quick.get("finetune", {})}
    arguments = {key: moved(value, CONFIGURED_ROOT, str(out)) for key, value in overridden.items()}
    arguments["dataset_dir"] = str(data_dir)
    print(f"python -m training.finetune {path.relative_to(CONFIGS.parents[2])}", flush=True)
    finetune.main(arguments)
    timings["train_and_baselines"] = time.perf_counter() - t

    stage(3, "Results")
    classifier_dir = Path(arguments["output_dir"])
    record = RunRecord.read(classifier_dir)
    report = results_table(record)
    print(report)
    results = record_results(record, published_baselines=image_data.PUBLISHED)

    stage(4, "Model card from the run's own results, and a hub-ready folder")
    t = time.perf_counter()
    hub = out / "hub" / "classifier"
    card_and_hub_folder(classifier_dir, hub)
    timings["card_and_export"] = time.perf_counter() - t

    stage(5, "Classifying test pictures in a fresh interpreter where `import custom_transformer` fails")
    t = time.perf_counter()
    samples = write_samples(splits["test"], out / "samples")
    load_without_package(out, hub, samples)
    timings["reload"] = time.perf_counter() - t

    return write_results(out, results, report, timings, start)


def results_table(record: RunRecord) -> str:
    sizes, split = record.dataset.split_sizes, record.evaluated_split
    pixels = record.baselines["pixel_logreg"]
    rows = [
        (
            "majority class",
            record.baselines["majority_class"]["accuracy"],
            record.baselines["majority_class"]["f1_macro"],
        ),
        (f"logistic regression on pixels (C={pixels['C']:g})", pixels["accuracy"], pixels["f1_macro"]),
        *((f"{name} (published, not fitted here)", accuracy, None) for name, accuracy in image_data.PUBLISHED.items()),
        (
            f"custom_transformer ({record.preset} preset, from scratch)",
            record.metrics["accuracy"],
            record.metrics["f1_macro"],
        ),
    ]
    lines = [
        f"Fashion-MNIST, {split} split ({sizes[split]} pictures, 10 classes; trained on {sizes['train']}):",
        f"  {'':<60} {'accuracy':>9} {'macro-F1':>9}",
        *(f"  {name:<60} {accuracy:>9.3f} {'' if f1 is None else f'{f1:.3f}':>9}" for name, accuracy, f1 in rows),
    ]
    return "\n".join(lines)


def write_samples(test, folder: Path) -> list[Path]:
    """The first test pictures as PNG files, named after their true class."""
    folder.mkdir(parents=True, exist_ok=True)
    names = test.features["label"].names
    paths = []
    for index in range(SAMPLES):
        row = test[index]
        path = folder / f"{index}-{names[row['label']].replace('/', '-').replace(' ', '-')}.png"
        row["image"].save(path)
        paths.append(path)
    return paths


def load_without_package(out: Path, hub: Path, samples: list[Path]):
    pictures = [str(path.resolve()) for path in samples]
    run_without_package(out, ["--image_classifier", str(hub.resolve()), "--images", *pictures])


if __name__ == "__main__":
    main()
