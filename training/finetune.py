"""Fine-tune a checkpoint, or a preset from scratch, for any task with code in training/tasks/ (text, token and
image classification, extractive question answering, translation), or score a fine-tuned one.

    python -m training.finetune --model_name_or_path out/lm --task text-classification \
        --train_files train.jsonl --validation_files validation.jsonl --test_files test.jsonl \
        --output_dir out/classifier --num_train_epochs 5 --learning_rate 5e-4 --do_train --do_eval --do_predict
    python -m training.finetune --preset vit --config_overrides "image_size=28,patch_size=4,num_channels=1" \
        --task image-classification --train_files images/train --test_files images/test --output_dir out/vit \
        --do_train --do_predict
    python -m training.finetune --model_name_or_path out/classifier --test_files other.jsonl --do_predict \
        --output_dir scores

The task's module reads the labels (for classification: a ClassLabel's names, or the distinct values of the train
split, saved as the config's id2label/label2id; scoring a fine-tuned model uses its own), builds the inputs and
scores predictions. Evaluation runs every epoch, early stopping watches the task's best metric on the validation
split (macro-F1, or F1 for QA), and the best checkpoint is the one kept. The test split (--do_predict) is scored
once at the end, next to the task's baselines on exactly the same rows.
"""

import logging
import time
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    EarlyStoppingCallback,
    Seq2SeqTrainingArguments,
    set_seed,
)

from custom_transformer import PRESETS, CustomTransformerConfig  # registers the Auto classes: no remote code needed
from custom_transformer.configuration_custom_transformer import image_pair

from .common import (
    DataError,
    DataFileArguments,
    add_validation_split,
    check_disk_space,
    check_tokenizer_fits,
    config_overrides,
    load_data,
    parse_args,
    preset_of,
    require_columns,
    require_model_folder,
    resume_or_start,
    run_main,
    setup_logging,
    train_and_evaluate,
    weights_named_when_damaged,
    write_run_record,
)
from .common import (
    TrainingArguments as ScriptTrainingArguments,
)
from .tasks import FINE_TUNING_TASKS, Task

logger = logging.getLogger("training")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
IMAGE_PROCESSOR_FILE = "preprocessor_config.json"
TASK_DEFAULT = "task"  # --metric_for_best_model: the task's `best_metric`, known once the task is


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "The checkpoint folder to fine-tune or to score (or --preset)."}
    )
    preset: str | None = field(
        default=None, metadata={"help": f"Train from scratch: an architecture preset ({', '.join(PRESETS)})."}
    )
    config_overrides: str | None = field(
        default=None, metadata={"help": 'With --preset: fields to change, "image_size=28,num_channels=1" or JSON.'}
    )
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder; default: the one saved with the checkpoint."}
    )
    image_processor_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Image processor folder; default: the checkpoint's, or (--preset) one for its image size."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the checkpoint's own code (needed for models of other packages)."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Fine-tune a classifier on other labels than its own: its head is initialised anew."},
    )


@dataclass
class TaskDataArguments(DataFileArguments):
    task: str | None = field(
        default=None,
        metadata={"help": f"One of {', '.join(FINE_TUNING_TASKS)}; default: the checkpoint's head, else the first."},
    )
    max_seq_length: int = field(default=256, metadata={"help": "Longer inputs are truncated."})
    validation_split_percentage: float = field(
        default=10, metadata={"help": "Percent of train held out for validation when no validation data is given."}
    )
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Evaluations without improvement before stopping; 0 disables early stopping."}
    )
    baselines: bool = field(default=True, metadata={"help": "Score the task's baselines on the evaluated split."})


def _task_arguments() -> dict[str, tuple[str, list[str]]]:
    """--<name> -> (default, what it is for each task that reads it): its columns and its own options."""
    arguments = {}
    for task in FINE_TUNING_TASKS.values():
        for column in (*task.columns, *task.options):
            default, helps = arguments.setdefault(column.argument, (column.default, []))
            helps.append(f"{task.pipeline_tag}: {column.help}")
    return arguments


# One `--<name>` argument per column a fine-tuning task reads and per option it has (its row says which).
DataArguments = make_dataclass(
    "DataArguments",
    [
        (name, str, field(default=default, metadata={"help": "; ".join(helps) + "."}))
        for name, (default, helps) in _task_arguments().items()
    ],
    bases=(TaskDataArguments,),
)


@dataclass
class TrainingArguments(ScriptTrainingArguments, Seq2SeqTrainingArguments):
    """The Trainer's arguments, with defaults that evaluate and checkpoint every epoch and keep the best model; and
    Seq2SeqTrainer's (`--generation_num_beams`, `--generation_max_length`) for the tasks that generate."""

    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch or best."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best checkpoint's weights."})
    metric_for_best_model: str | None = field(
        default=TASK_DEFAULT,
        metadata={"help": "A metric of the task (default: its own, macro-F1 for classification, F1 for QA)."},
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the best one always)."})

    def __post_init__(self):
        if not self.do_train:  # scoring a model: no epochs to evaluate or checkpoint, only the splits asked for
            self.eval_strategy, self.save_strategy, self.load_best_model_at_end = "no", "no", False
        super().__post_init__()


# -- arguments and checkpoint ------------------------------------------------------------------------------------


def resolve_task(data_args: DataArguments, config) -> Task:
    """`--task`, or the checkpoint's own fine-tuned head, or text classification."""
    architecture = (config.architectures or [""])[0]
    own = [tag for tag, task in FINE_TUNING_TASKS.items() if architecture.endswith(task.head_suffix)]
    tag = data_args.task or (own[0] if own else next(iter(FINE_TUNING_TASKS)))
    if tag not in FINE_TUNING_TASKS:
        raise DataError(f"--task {tag!r} is not supported: use one of {', '.join(FINE_TUNING_TASKS)}.")
    return FINE_TUNING_TASKS[tag]


def check_arguments(task: Task, config, data_args: DataArguments, training_args: TrainingArguments):
    training_args.predict_with_generate = task.generates  # scored on the text it generates, not on logits
    if training_args.metric_for_best_model == TASK_DEFAULT:
        training_args.metric_for_best_model = task.best_metric
        training_args.greater_is_better = not task.best_metric.endswith("loss")
    architecture = (config.architectures or ["The checkpoint"])[0]
    if not training_args.do_train and not architecture.endswith(task.head_suffix):
        raise DataError(
            f"{architecture} has no {task.pipeline_tag} head to score: add --do_train (with "
            "--train_files) to fine-tune one, or pass a fine-tuned checkpoint."
        )
    if training_args.do_train and data_args.early_stopping_patience > 0:
        if training_args.eval_strategy == "no" or not training_args.load_best_model_at_end:
            raise DataError(
                "Early stopping needs evaluation and load_best_model_at_end: keep --eval_strategy epoch (or steps) "
                "and --load_best_model_at_end true, or pass --early_stopping_patience 0."
            )
    best = (training_args.metric_for_best_model or "loss").removeprefix("eval_")
    if best not in task.metrics:
        raise DataError(f"--metric_for_best_model {best!r} is not computed here: use one of {', '.join(task.metrics)}.")


def within_positions(flag: str, length: int, config, what: str) -> int:
    """`length`, or the position table's size with a warning naming `flag` when it is longer."""
    if length > config.max_position_embeddings:
        logger.warning(
            "%s %d exceeds the model's max_position_embeddings=%d: %s %d tokens.",
            flag,
            length,
            config.max_position_embeddings,
            what,
            config.max_position_embeddings,
        )
    return min(length, config.max_position_embeddings)


def limit_generation(training_args: TrainingArguments, data_args, config):
    """Generate up to the tokenized length unless told otherwise, and never past the position table."""
    length = training_args.generation_max_length or data_args.max_seq_length
    training_args.generation_max_length = within_positions(
        "--generation_max_length", length, config, "generating up to"
    )


def check_model_source(model_args: ModelArguments):
    """A checkpoint to start from, or a preset to start from scratch: exactly one."""
    if (model_args.model_name_or_path is None) == (model_args.preset is None):
        raise DataError(
            "Give exactly one of --model_name_or_path (a checkpoint to fine-tune or score) and --preset (a new "
            f"model from scratch: {', '.join(PRESETS)})."
        )
    if model_args.model_name_or_path is not None:
        if model_args.config_overrides:
            raise DataError("--model_name_or_path brings its own config: drop --config_overrides (or use --preset).")
        require_model_folder(model_args.model_name_or_path)
    elif model_args.preset not in PRESETS:
        raise DataError(f"Unknown --preset {model_args.preset!r}. Known presets: {', '.join(PRESETS)}.")


def load_config(model_args: ModelArguments, **head_fields):
    """The checkpoint's config, or the preset's with --config_overrides; with the head's fields (labels)."""
    if model_args.preset is not None:
        return CustomTransformerConfig.from_preset(
            model_args.preset, **config_overrides(model_args.config_overrides), **head_fields
        )
    return AutoConfig.from_pretrained(
        model_args.model_name_or_path, **head_fields, trust_remote_code=model_args.trust_remote_code
    )


def load_model(task: Task, config, model_args: ModelArguments):
    """The checkpoint with this task's head (a new one when `--ignore_mismatched_sizes` asks), or a new model."""
    if model_args.preset is not None:
        return task.auto_model().from_config(config)
    with weights_named_when_damaged(model_args.model_name_or_path):
        return task.auto_model().from_pretrained(
            model_args.model_name_or_path,
            config=config,
            trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        )


def load_processor(task: Task, model_args: ModelArguments, config, data_args):
    """What prepares the task's inputs (`Task.processor`), checked against the model it feeds."""
    return PROCESSOR_LOADERS[task.processor](model_args, config, data_args)


def load_text_tokenizer(model_args: ModelArguments, config, data_args):
    if model_args.preset is not None and model_args.tokenizer_name_or_path is None:
        raise DataError("--preset builds a new model without a tokenizer: pass --tokenizer_name_or_path.")
    if model_args.preset is not None:  # a new model embeds exactly the tokenizer's vocabulary
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name_or_path)
        config.vocab_size, config.pad_token_id = len(tokenizer), tokenizer.pad_token_id
        if config.is_encoder_decoder:  # the decoder starts from <s> (or, without one, <pad> as Marian's) to </s>
            config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
            config.decoder_start_token_id = start
    tokenizer = load_tokenizer(model_args, config.vocab_size)
    data_args.max_seq_length = within_positions(
        "--max_seq_length", data_args.max_seq_length, config, "inputs are truncated to"
    )
    return tokenizer


def load_image_processor(model_args: ModelArguments, config, data_args):
    """The checkpoint's image processor (transformers' own class, no remote code); for a new model, or a
    checkpoint without one, transformers' ViT processor at the model's image size, pixels scaled to [-1, 1]."""
    source = model_args.image_processor_name_or_path or model_args.model_name_or_path
    if source is not None and Path(source, IMAGE_PROCESSOR_FILE).is_file():
        return AutoImageProcessor.from_pretrained(source)
    if model_args.image_processor_name_or_path is not None:
        raise DataError(
            f"--image_processor_name_or_path {source} holds no {IMAGE_PROCESSOR_FILE}: pass a folder an image "
            "processor was saved to (save_pretrained), or drop the flag to use one for the model's image size."
        )
    if config.num_channels == 1:
        logger.warning(
            "num_channels=1: transformers' image pipelines convert every picture to RGB, so this model will be "
            "usable directly but not through pipeline(); num_channels=3 reads grey pictures as RGB and works with both."
        )
    height, width = image_pair(config.image_size)
    processor_class = getattr(transformers, "ViTImageProcessorPil", None) or transformers.ViTImageProcessor
    logger.info("No image processor saved with the model: resizing to %dx%d and scaling to [-1, 1].", height, width)
    half = [0.5] * config.num_channels
    return processor_class(size={"height": height, "width": width}, image_mean=half, image_std=half)


PROCESSOR_LOADERS = {"tokenizer": load_text_tokenizer, "image_processor": load_image_processor}  # by Task.processor


def load_tokenizer(model_args: ModelArguments, vocab_size: int):
    """The checkpoint's tokenizer, or another one only if it has the very same vocabulary."""
    source = model_args.tokenizer_name_or_path or model_args.model_name_or_path
    if Path(source).is_dir() and not any((Path(source) / name).is_file() for name in TOKENIZER_FILES):
        raise DataError(
            f"{source} holds no tokenizer ({' or '.join(TOKENIZER_FILES)}): pass --tokenizer_name_or_path with the "
            "tokenizer the model was trained with (training.pretrain saves it next to the model)."
        )
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    check_tokenizer_fits(tokenizer, vocab_size, model_args.model_name_or_path, source)
    from_checkpoint = model_args.model_name_or_path is not None  # else a new model (--preset) for this tokenizer
    saved_with_model = Path(model_args.model_name_or_path or "") / "tokenizer_config.json"
    if from_checkpoint and model_args.tokenizer_name_or_path and saved_with_model.is_file():
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


# -- the script --------------------------------------------------------------------------------------------------


def main(argv: list[str] | dict | None = None) -> dict:
    started = time.perf_counter()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv)
    setup_logging(training_args)
    check_model_source(model_args)
    base_config = load_config(model_args)
    task = resolve_task(data_args, base_config)
    code = task.task_code()
    check_arguments(task, base_config, data_args, training_args)
    resume_from = resume_or_start(training_args)

    raw = load_data(data_args, training_args)
    require_columns(raw, task.column_flags(data_args))
    raw, head_fields = code.read_labels(raw, task, data_args, model_args, base_config, training_args.do_train)
    if training_args.do_train:
        stratify = code.stratify_column(task, data_args)
        raw = add_validation_split(raw, data_args.validation_split_percentage, training_args.seed, stratify)
    if "validation" not in raw and training_args.do_train:
        raise DataError(
            "Fine-tuning needs a validation split: pass --validation_files or --validation_split_percentage."
        )
    config = load_config(model_args, **head_fields)
    names = list(config.id2label.values()) if "id2label" in head_fields else None
    processor = load_processor(task, model_args, config, data_args)
    if task.generates:
        limit_generation(training_args, data_args, config)
    encoded = task.preprocess()(
        raw,
        processor,
        *task.column_flags(data_args),
        max_length=data_args.max_seq_length,
        training_args=training_args,
        num_proc=data_args.preprocessing_num_workers,
        config=config,
        data_args=data_args,
    )
    logger.info("Labels: %s; rows: %s", names, {split: len(d) for split, d in encoded.items()})
    training_args.include_for_metrics = [*training_args.include_for_metrics, *code.INCLUDE_FOR_METRICS]

    set_seed(training_args.seed)  # the new head's (or new model's) initial weights
    model = load_model(task, config, model_args)
    check_disk_space(training_args, model)
    if model.config.pad_token_id is None and getattr(processor, "pad_token_id", None) is not None:
        model.config.pad_token_id = processor.pad_token_id
    patience = data_args.early_stopping_patience if training_args.do_train else 0
    trainer = task.trainer_class()(
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=encoded.get("validation"),
        processing_class=processor,
        data_collator=task.data_collator(processor),
        compute_metrics=code.compute_metrics(config, processor),
        preprocess_logits_for_metrics=code.logits_to_predictions,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)] if patience > 0 else None,
    )
    results = train_and_evaluate(trainer, resume_from, {"eval": encoded.get("validation"), "test": encoded.get("test")})

    write_run_record(
        trainer,
        task=task.pipeline_tag,
        preset=model_args.preset or preset_of(model_args.model_name_or_path),
        data_args=data_args,
        split_sizes={split: len(dataset) for split, dataset in encoded.items()},
        results=results,
        started=started,
        baselines=lambda split: {
            name: code.BASELINES[name](raw, encoded, split, data_args, config, processor)
            for name in (task.baselines if data_args.baselines else ())
        },
        labels=names,
        base_model=model_args.model_name_or_path,
        max_seq_length=data_args.max_seq_length if task.processor == "tokenizer" else None,
        early_stopping_patience=patience,
        best_checkpoint=Path(trainer.state.best_model_checkpoint or "").name or None,
        epochs_run=trainer.state.epoch,
    )
    return {key: value for metrics in results.values() for key, value in metrics.items()}


if __name__ == "__main__":
    run_main(main)
