"""`run_info.json`: what a run was, in the one format the model cards are built from.

    {"task": str,                # a pipeline tag, a key of training.tasks.TASKS (e.g. "text-classification")
     "preset": str, "base_model": str | null,
     "dataset": {"name", "files": [relative paths], "license", "source", "split_sizes": {split: rows}},
     "metrics": {...},            # on the test split (validation when there is none: see "evaluated_split")
     "evaluated_split": str,
     "baselines": {"majority_class": {"accuracy", "f1_macro"}, "tfidf_logreg": {...}}
                  # language models: {"unigram": {"perplexity"}}
     "wall_time_seconds": float, "hardware": str, "hyperparameters": {...}}

Paths are written relative (to the current directory, or as a bare name), never as absolute paths of
the machine that trained.
"""

import json
import os
import platform
from pathlib import Path

import torch
from transformers import PreTrainedConfig, TrainingArguments

RUN_INFO = "run_info.json"


def portable_path(path: str | os.PathLike | None) -> str | None:
    """`path` relative to the current directory when it lies under it, else its last component."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def hardware(training_args: TrainingArguments) -> str:
    """The device the Trainer trained on (`--use_cpu` wins over a visible GPU), process count and torch."""
    if training_args.device.type == "cuda":
        device = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return f"{device}; {training_args.world_size} training process(es); torch {torch.__version__}"


def hyperparameters(training_args: TrainingArguments, config: PreTrainedConfig, **extra) -> dict:
    """The numbers needed to rerun: optimisation, batch, and the model's size."""
    keys = (
        "learning_rate",
        "lr_scheduler_type",
        "warmup_steps",
        "weight_decay",
        "num_train_epochs",
        "max_steps",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "seed",
    )
    model_keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
    return {
        **{key: getattr(training_args, key) for key in keys},
        "world_size": training_args.world_size,
        "global_train_batch_size": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * training_args.world_size,
        "model": {key: getattr(config, key) for key in model_keys if hasattr(config, key)},
        **extra,
    }


def write_run_info(output_dir: str | os.PathLike, **fields) -> Path:
    path = Path(output_dir) / RUN_INFO
    path.write_text(json.dumps(fields, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_run_info(output_dir: str | os.PathLike) -> dict:
    return json.loads((Path(output_dir) / RUN_INFO).read_text(encoding="utf-8"))
