"""Score any saved checkpoint on one split and write `<split>_results.json` (and all_results.json).

    python -m training.evaluate_model --model_name_or_path out/classifier --split test --files test.jsonl

The task follows from the checkpoint's architecture: classifiers get accuracy and macro-F1 (through the
evaluate modules in training/metrics/), language models loss and perplexity. Inputs are built by the same
functions as in training. Runs distributed like the training scripts (rows are counted once).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from datasets import DatasetDict
from transformers import AutoConfig, AutoTokenizer, Trainer, TrainingArguments

import custom_transformer  # noqa: F401 - registers the Auto classes, so local code loads without trust_remote_code

from .cli import parse_args, run_main, setup_logging
from .loading import DataError, check_tokenizer_fits, load_splits, require_columns, require_rows
from .preprocessing import check_known_labels, drop_empty_texts, tokenize_into_blocks
from .scoring import classification_metrics, logits_to_predictions, perplexity
from .tasks import TASKS, Task

logger = logging.getLogger("training")


@dataclass
class EvaluationArguments:
    model_name_or_path: str = field(metadata={"help": "The checkpoint folder to score."})
    split: str = field(default="test", metadata={"help": "Name of the split (and of the results file)."})
    files: list[str] | None = field(default=None, metadata={"help": "Data files of the split (txt/json/csv/parquet)."})
    dataset_dir: str | None = field(default=None, metadata={"help": "A DatasetDict saved with save_to_disk."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    label_column: str = field(default="label", metadata={"help": "text-classification: the label."})
    tokens_column: str = field(default="tokens", metadata={"help": "token-classification: the list of words."})
    tags_column: str = field(default="tags", metadata={"help": "token-classification: one tag per word."})
    max_seq_length: int = field(default=256, metadata={"help": "Classifiers: longer inputs are truncated."})
    block_size: int = field(default=128, metadata={"help": "Language models: tokens per packed block."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Masked LMs: fraction of tokens to mask."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the checkpoint's own code."})


@dataclass
class EvaluationTrainingArguments(TrainingArguments):
    output_dir: str | None = field(default=None, metadata={"help": "Where to write the results; default: the model."})

    def __post_init__(self):
        self.results_next_to_model = self.output_dir is None
        super().__post_init__()


def task_of(config) -> Task:
    architecture = (config.architectures or [""])[0]
    for task in TASKS.values():
        if architecture.endswith(task.head_suffix):
            return task
    suffixes = ", ".join(task.head_suffix for task in TASKS.values())
    raise DataError(f"Cannot tell what to score for architecture {architecture!r}: supported heads end in {suffixes}.")


def main(argv: list[str] | None = None) -> dict:
    args, training_args = parse_args((EvaluationArguments, EvaluationTrainingArguments), argv)
    if not (Path(args.model_name_or_path) / "config.json").is_file():
        raise DataError(f"--model_name_or_path {args.model_name_or_path} is not a model folder (no config.json).")
    if training_args.results_next_to_model:
        training_args.output_dir = args.model_name_or_path
    setup_logging(training_args)
    config = AutoConfig.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    task = task_of(config)
    tokenizer = AutoTokenizer.from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    check_tokenizer_fits(tokenizer, config.vocab_size, args.model_name_or_path, args.model_name_or_path)

    loaded = load_splits({args.split: args.files}, args.dataset_dir)
    if args.split not in loaded:
        raise DataError(f"No split {args.split!r} in {args.dataset_dir}: it has {list(loaded)}. Pass --split.")
    splits = DatasetDict({args.split: loaded[args.split]})
    require_rows(splits, [args.split])
    num_proc = args.preprocessing_num_workers
    compute_metrics = preprocess_logits = None
    if task.labels is None:  # a language model
        if args.block_size > config.max_position_embeddings:
            raise DataError(
                f"--block_size {args.block_size} exceeds the model's max_position_embeddings="
                f"{config.max_position_embeddings}: pass a smaller --block_size."
            )
        require_columns(splits, {args.text_column: "--text_column"})
        encoded = tokenize_into_blocks(splits, tokenizer, args.text_column, args.block_size, training_args, num_proc)
        collator = task.data_collator(tokenizer, mlm_probability=args.mlm_probability)
    else:
        per_token = task.per_token
        columns = task.column_flags(args)
        input_column, label_column = columns
        require_columns(splits, columns)
        if not per_token:
            splits = drop_empty_texts(splits, input_column, num_proc)
        label2id = {str(name): int(i) for name, i in config.label2id.items()}
        check_known_labels(splits, label_column, label2id, per_token)
        encoded = task.tokenize()(
            splits, tokenizer, input_column, label_column, label2id, args.max_seq_length, training_args, num_proc
        )
        collator = task.data_collator(tokenizer)
        compute_metrics, preprocess_logits = classification_metrics(len(label2id)), logits_to_predictions

    model = task.auto_model().from_pretrained(args.model_name_or_path, trust_remote_code=args.trust_remote_code)
    trainer = Trainer(
        model=model,
        args=training_args,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        preprocess_logits_for_metrics=preprocess_logits,
    )
    metrics = trainer.evaluate(encoded[args.split], metric_key_prefix=args.split)
    metrics[f"{args.split}_samples"] = len(encoded[args.split])
    if compute_metrics is None:
        metrics[f"{args.split}_perplexity"] = perplexity(metrics[f"{args.split}_loss"])
    trainer.log_metrics(args.split, metrics)
    trainer.save_metrics(args.split, metrics)
    return metrics


if __name__ == "__main__":
    run_main(main)
