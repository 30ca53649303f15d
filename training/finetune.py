"""Fine-tune a pre-trained checkpoint for sequence classification or token classification.

    python -m training.finetune --model_name_or_path out/lm --task text-classification \
        --train_files train.jsonl --validation_files validation.jsonl --test_files test.jsonl \
        --output_dir out/classifier --num_train_epochs 5 --learning_rate 5e-4

Labels are read from the data (a ClassLabel's names, or the distinct values of the label column) and saved
as the config's id2label/label2id. Evaluation runs every epoch, early stopping watches macro-F1 on the
validation split, and the best checkpoint is the one kept. The test split is scored once at the end,
together with a majority-class and a TF-IDF + logistic-regression baseline on exactly the same rows.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from transformers import (
    AutoConfig,
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

import custom_transformer  # noqa: F401 - registers the Auto classes, so local code loads without trust_remote_code

from . import baselines
from .cli import checkpoint_to_resume, parse_args, run_main, setup_logging
from .loading import DataError, add_validation_split, check_tokenizer_fits, load_splits, require_columns, require_rows
from .preprocessing import check_known_labels, drop_empty_texts, label_names
from .results import RUN_INFO, hardware, hyperparameters, portable_path, read_run_info, write_run_info
from .scoring import IGNORE_INDEX, classification_metrics, logits_to_predictions
from .tasks import CLASSIFICATION_METRICS, FINE_TUNING_TASKS

logger = logging.getLogger("training")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "The pre-trained checkpoint folder (e.g. training.pretrain's)."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder; default: the one saved with the checkpoint."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the checkpoint's own code (needed for models of other packages)."}
    )


@dataclass
class DataArguments:
    task: str = field(default="text-classification", metadata={"help": f"One of {', '.join(FINE_TUNING_TASKS)}."})
    train_files: list[str] | None = field(default=None, metadata={"help": ".json/.jsonl, .csv or .parquet files."})
    validation_files: list[str] | None = field(default=None, metadata={"help": "Validation data, same formats."})
    test_files: list[str] | None = field(default=None, metadata={"help": "Test data, scored once at the end."})
    dataset_dir: str | None = field(default=None, metadata={"help": "A DatasetDict saved with save_to_disk."})
    text_column: str = field(default="text", metadata={"help": "text-classification: the text."})
    label_column: str = field(default="label", metadata={"help": "text-classification: the label."})
    tokens_column: str = field(default="tokens", metadata={"help": "token-classification: the list of words."})
    tags_column: str = field(default="tags", metadata={"help": "token-classification: one tag per word."})
    max_seq_length: int = field(default=256, metadata={"help": "Longer inputs are truncated."})
    validation_split_percentage: float = field(
        default=10, metadata={"help": "Percent of train held out for validation when no validation data is given."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Evaluations without improvement before stopping; 0 disables early stopping."}
    )
    baselines: bool = field(default=True, metadata={"help": "Score majority-class and TF-IDF baselines too."})
    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name for run_info.json."})
    dataset_license: str = field(default="unknown", metadata={"help": "Dataset licence for run_info.json."})
    dataset_source: str = field(default="local files", metadata={"help": "Where the data came from (run_info)."})


@dataclass
class FinetuneTrainingArguments(TrainingArguments):
    """TrainingArguments whose defaults evaluate and checkpoint every epoch and keep the best model by macro-F1."""

    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch or best."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best checkpoint's weights."})
    metric_for_best_model: str | None = field(
        default="f1_macro", metadata={"help": f"One of {', '.join(CLASSIFICATION_METRICS)}."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one always)."})


def load_tokenizer(model_args: ModelArguments, vocab_size: int):
    """The checkpoint's tokenizer, or another one only if it has the very same vocabulary."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    check_tokenizer_fits(tokenizer, vocab_size, model_args.model_name_or_path, source)
    saved_with_model = Path(model_args.model_name_or_path) / "tokenizer_config.json"
    if model_args.tokenizer_name_or_path and saved_with_model.is_file():
        own = AutoTokenizer.from_pretrained(
            model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
        )
        if own.get_vocab() != tokenizer.get_vocab():
            raise DataError(
                f"Tokenizer/model vocabulary mismatch: {model_args.tokenizer_name_or_path} is not the tokenizer "
                f"{model_args.model_name_or_path} was trained with (their vocabularies differ), so token ids would "
                "mean different things. Drop --tokenizer_name_or_path to use the checkpoint's own tokenizer."
            )
    if tokenizer.pad_token is None:
        logger.warning("The tokenizer has no pad token; padding with its eos token %r.", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_arguments(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments):
    if data_args.task not in FINE_TUNING_TASKS:
        raise DataError(f"--task {data_args.task!r} is not supported: use one of {', '.join(FINE_TUNING_TASKS)}.")
    if not (Path(model_args.model_name_or_path) / "config.json").is_file():
        raise DataError(
            f"--model_name_or_path {model_args.model_name_or_path} is not a model folder (no config.json): "
            "pass the output_dir of training.pretrain, or any saved checkpoint."
        )
    if data_args.early_stopping_patience > 0:
        if training_args.eval_strategy == "no" or not training_args.load_best_model_at_end:
            raise DataError(
                "Early stopping needs evaluation and load_best_model_at_end: keep --eval_strategy epoch (or steps) "
                "and --load_best_model_at_end true, or pass --early_stopping_patience 0."
            )
    best = (training_args.metric_for_best_model or "loss").removeprefix("eval_")
    metrics = FINE_TUNING_TASKS[data_args.task].metrics
    if best not in metrics:
        raise DataError(f"--metric_for_best_model {best!r} is not computed here: use one of {', '.join(metrics)}.")


def load_data(data_args: DataArguments, seed: int) -> DatasetDict:
    files = {"train": data_args.train_files, "validation": data_args.validation_files, "test": data_args.test_files}
    splits = load_splits(files, data_args.dataset_dir)
    if "train" not in splits:
        raise DataError(f"No train split in {data_args.dataset_dir}: it has {list(splits)}.")
    splits = DatasetDict({name: splits[name] for name in ("train", "validation", "test") if name in splits})
    require_rows(splits, list(splits))
    task = FINE_TUNING_TASKS[data_args.task]
    require_columns(splits, task.column_flags(data_args))
    if not task.per_token:
        splits = drop_empty_texts(splits, data_args.text_column, data_args.preprocessing_num_workers)
        require_rows(splits, list(splits))
    splits = add_validation_split(splits, data_args.validation_split_percentage, seed)
    if "validation" not in splits:
        raise DataError(
            "Fine-tuning needs a validation split: pass --validation_files or --validation_split_percentage."
        )
    return splits


def score_baselines(raw: DatasetDict, encoded: DatasetDict, split: str, data_args: DataArguments, num_labels: int):
    """Majority class (and TF-IDF + logistic regression for texts), on the rows the model is scored on."""
    train_labels = _scored_labels(encoded["train"])
    test_labels = _scored_labels(encoded[split])
    scores = {"majority_class": baselines.majority_class(train_labels, test_labels, num_labels)}
    if "tfidf_logreg" in FINE_TUNING_TASKS[data_args.task].baselines:
        scores["tfidf_logreg"] = baselines.tfidf_logreg(
            raw["train"][data_args.text_column],
            encoded["train"]["labels"],
            raw["validation"][data_args.text_column],
            encoded["validation"]["labels"],
            raw[split][data_args.text_column],
            test_labels,
            num_labels,
        )
    return scores


def _scored_labels(dataset) -> list[int]:
    labels = np.concatenate([np.atleast_1d(np.asarray(row)) for row in dataset["labels"]])
    return labels[labels != IGNORE_INDEX].tolist()


def main(argv: list[str] | None = None) -> dict:
    start = time.perf_counter()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, FinetuneTrainingArguments), argv)
    setup_logging(training_args)
    check_arguments(model_args, data_args, training_args)
    resume_from = checkpoint_to_resume(training_args)
    task = FINE_TUNING_TASKS[data_args.task]
    per_token = task.per_token
    tokenize = task.tokenize()
    input_column, label_column = task.column_flags(data_args)

    raw = load_data(data_args, training_args.seed)
    names = label_names(raw, label_column, per_token)
    label2id = {name: i for i, name in enumerate(names)}
    check_known_labels(raw, label_column, label2id, per_token)
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id=label2id,
        trust_remote_code=model_args.trust_remote_code,
    )
    tokenizer = load_tokenizer(model_args, config.vocab_size)
    encoded = tokenize(
        raw,
        tokenizer,
        input_column,
        label_column,
        label2id,
        data_args.max_seq_length,
        training_args,
        data_args.preprocessing_num_workers,
    )
    logger.info("Labels: %s; rows: %s", names, {split: len(d) for split, d in encoded.items()})

    set_seed(training_args.seed)  # the new head's initial weights
    model = task.auto_model().from_pretrained(
        model_args.model_name_or_path, config=config, trust_remote_code=model_args.trust_remote_code
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    patience = data_args.early_stopping_patience
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        processing_class=tokenizer,
        data_collator=task.data_collator(tokenizer),
        compute_metrics=classification_metrics(len(names)),
        preprocess_logits_for_metrics=logits_to_predictions,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)] if patience > 0 else None,
    )

    train_result = trainer.train(resume_from_checkpoint=resume_from)
    trainer.save_model()  # the best model (load_best_model_at_end), its remote code and the tokenizer
    train_metrics = {**train_result.metrics, "train_samples": len(encoded["train"])}
    trainer.log_metrics("train", train_metrics)
    trainer.save_metrics("train", train_metrics)
    trainer.save_state()

    eval_metrics = trainer.evaluate()
    trainer.log_metrics("eval", eval_metrics)
    trainer.save_metrics("eval", eval_metrics)
    scored_split = "test" if "test" in encoded else "validation"
    metrics = eval_metrics
    if scored_split == "test":
        metrics = trainer.predict(encoded["test"], metric_key_prefix="test").metrics
        trainer.log_metrics("test", metrics)
        trainer.save_metrics("test", metrics)

    if trainer.is_world_process_zero():
        prefix = "test_" if scored_split == "test" else "eval_"
        base_run = Path(model_args.model_name_or_path) / RUN_INFO
        files = [*(data_args.train_files or []), *(data_args.validation_files or []), *(data_args.test_files or [])]
        files = files or [data_args.dataset_dir]
        write_run_info(
            training_args.output_dir,
            task=data_args.task,
            preset=read_run_info(base_run.parent)["preset"] if base_run.is_file() else "custom",
            base_model=portable_path(model_args.model_name_or_path),
            # A card names a Hub base model in its metadata, never a folder of this machine.
            base_model_is_local=Path(model_args.model_name_or_path).is_dir(),
            dataset={
                "name": data_args.dataset_name or Path(files[0]).parent.name or Path(files[0]).stem,
                "files": [portable_path(f) for f in files],
                "license": data_args.dataset_license,
                "source": data_args.dataset_source,
                "split_sizes": {split: len(dataset) for split, dataset in encoded.items()},
                "labels": names,
            },
            metrics={key: metrics[prefix + key] for key in (*task.metrics, "num_rows") if prefix + key in metrics},
            evaluated_split=scored_split,
            baselines=score_baselines(raw, encoded, scored_split, data_args, len(names)) if data_args.baselines else {},
            wall_time_seconds=round(time.perf_counter() - start, 1),
            hardware=hardware(training_args),
            hyperparameters=hyperparameters(
                training_args,
                model.config,
                max_seq_length=data_args.max_seq_length,
                early_stopping_patience=patience,
                best_checkpoint=portable_path(trainer.state.best_model_checkpoint),
                epochs_run=trainer.state.epoch,
            ),
        )
    return {**train_metrics, **eval_metrics, **metrics}


if __name__ == "__main__":
    run_main(main)
