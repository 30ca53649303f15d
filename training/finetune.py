"""Fine-tune a checkpoint for sequence or token classification, or score a fine-tuned one.

    python -m training.finetune --model_name_or_path out/lm --task text-classification \
        --train_files train.jsonl --validation_files validation.jsonl --test_files test.jsonl \
        --output_dir out/classifier --num_train_epochs 5 --learning_rate 5e-4 --do_train --do_eval --do_predict
    python -m training.finetune --model_name_or_path out/classifier --test_files other.jsonl --do_predict \
        --output_dir scores

Labels are read from the data (a ClassLabel's names, or the distinct values of the train split) and saved as
the config's id2label/label2id; scoring a fine-tuned model uses its own. Evaluation runs every epoch, early
stopping watches macro-F1 on the validation split, and the best checkpoint is the one kept. The test split
(--do_predict) is scored once at the end, next to the task's baselines on exactly the same rows.
"""

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import numpy as np
import pyarrow.compute as pc
import torch
from datasets import ClassLabel, DatasetDict, List, Value
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline, make_union
from transformers import AutoConfig, AutoTokenizer, EarlyStoppingCallback, EvalPrediction, Trainer, set_seed

import custom_transformer  # noqa: F401 - registers the Auto classes, so local code loads without trust_remote_code

from .common import (
    DataError,
    DataFileArguments,
    add_validation_split,
    check_disk_space,
    check_tokenizer_fits,
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
from .tasks import CLASSIFICATION_METRICS, FINE_TUNING_TASKS, Task

logger = logging.getLogger("training")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
IGNORE_INDEX = -100  # labels the loss skips: padding, special tokens, continuation pieces of a word
METRICS_DIR = Path(__file__).parent / "metrics"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "The checkpoint folder to fine-tune or to score."})
    tokenizer_name_or_path: str | None = field(
        default=None, metadata={"help": "Tokenizer folder; default: the one saved with the checkpoint."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the checkpoint's own code (needed for models of other packages)."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={"help": "Fine-tune a classifier on other labels than its own: its head is initialised anew."},
    )


@dataclass
class DataArguments(DataFileArguments):
    task: str | None = field(
        default=None,
        metadata={"help": f"One of {', '.join(FINE_TUNING_TASKS)}; default: the checkpoint's head, else the first."},
    )
    text_column: str = field(default="text", metadata={"help": "text-classification: the text."})
    label_column: str = field(default="label", metadata={"help": "text-classification: the label."})
    tokens_column: str = field(default="tokens", metadata={"help": "token-classification: the list of words."})
    tags_column: str = field(default="tags", metadata={"help": "token-classification: one tag per word."})
    max_seq_length: int = field(default=256, metadata={"help": "Longer inputs are truncated."})
    validation_split_percentage: float = field(
        default=10, metadata={"help": "Percent of train held out for validation when no validation data is given."}
    )
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Evaluations without improvement before stopping; 0 disables early stopping."}
    )
    baselines: bool = field(default=True, metadata={"help": "Score the task's baselines on the evaluated split."})


@dataclass
class TrainingArguments(ScriptTrainingArguments):
    """The Trainer's arguments, with defaults that evaluate and checkpoint every epoch and keep the best model."""

    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to checkpoint: no, steps, epoch or best."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "End with the best checkpoint's weights."})
    metric_for_best_model: str | None = field(
        default="f1_macro", metadata={"help": f"One of {', '.join(CLASSIFICATION_METRICS)}."}
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


def check_head_labels(base_config, task: Task, names: list[str], model_args: ModelArguments):
    """A checkpoint that already has this task's head keeps it only for the very same labels; other labels need
    a new head, which the user asks for (`--ignore_mismatched_sizes`) rather than getting by surprise."""
    architecture = (base_config.architectures or [""])[0]
    if not architecture.endswith(task.head_suffix) or model_args.ignore_mismatched_sizes:
        return
    own = [base_config.id2label[i] for i in range(base_config.num_labels)]
    if own != names:
        raise DataError(
            f"{model_args.model_name_or_path} is a {task.pipeline_tag} model for the labels {own}, the data has "
            f"{names}. Pass --ignore_mismatched_sizes to replace its head with a new one for these labels."
        )


def load_model(task: Task, config, model_args: ModelArguments):
    """The checkpoint with this task's head (a new one when `--ignore_mismatched_sizes` asks)."""
    with weights_named_when_damaged(model_args.model_name_or_path):
        return task.auto_model().from_pretrained(
            model_args.model_name_or_path,
            config=config,
            trust_remote_code=model_args.trust_remote_code,
            ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        )


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


# -- labels ------------------------------------------------------------------------------------------------------


def encode_labels(
    splits: DatasetDict, column: str, per_token: bool, names: list[str] | None = None
) -> tuple[DatasetDict, list[str]]:
    """The label column as ClassLabel ids (a list of them per row for tokens), named by `names` (a fine-tuned
    model's labels) or else by the train split: its ClassLabel's names, or its distinct values, sorted."""
    train_feature = _label_feature(splits["train" if "train" in splits else next(iter(splits))], column, per_token)
    if names is None and isinstance(train_feature, ClassLabel):
        names = list(train_feature.names)
    as_text = {split: _label_text(dataset, column, per_token) for split, dataset in splits.items()}
    if names is None:
        values = as_text["train"].data.column(column).combine_chunks()
        names = sorted(pc.unique(pc.list_flatten(values) if per_token else values).to_pylist())
        if len(names) < 2:
            raise DataError(
                f"Column {column!r} of the train split has {len(names)} distinct label(s): need at least 2."
            )
    label = ClassLabel(names=names)
    encoded = DatasetDict()
    for split, dataset in as_text.items():
        values = dataset.data.column(column).combine_chunks()
        unknown = sorted(set(pc.unique(pc.list_flatten(values) if per_token else values).to_pylist()) - set(names))
        if unknown:
            raise DataError(
                f"The {split} split has label(s) {unknown[:10]} that the train split / model does not have "
                f"(known: {names}). Fix the data, or train on data that contains them."
            )
        encoded[split] = dataset.cast_column(column, List(label) if per_token else label)
    return encoded, names


def _label_feature(dataset, column: str, per_token: bool):
    feature = dataset.features[column]
    if per_token and not isinstance(feature, List):
        raise DataError(f"Token classification needs a list of tags per row in column {column!r}.")
    return feature.feature if per_token else feature


def _label_text(dataset, column: str, per_token: bool):
    """The labels as strings: a ClassLabel's ids become its names, integers their digits; floats are refused."""
    feature = _label_feature(dataset, column, per_token)
    if isinstance(feature, ClassLabel):
        to_names = (lambda rows: [feature.int2str(row) for row in rows]) if per_token else feature.int2str
        return dataset.map(lambda batch: {column: to_names(batch[column])}, batched=True, desc="Reading labels")
    if not isinstance(feature, Value) or feature.dtype.startswith("float"):
        raise DataError(f"Column {column!r} holds {feature}: labels must be categories (strings or integers).")
    return dataset.cast_column(column, List(Value("string")) if per_token else Value("string"))


# -- inputs (each task's `tokenizer_function`) ----------------------------------------------------------------------


def tokenize_for_sequence_classification(
    splits, tokenizer, text_column, label_column, max_length, training_args, num_proc=None
) -> DatasetDict:
    def encode(batch):
        return {**tokenizer(batch[text_column], truncation=True, max_length=max_length), "labels": batch[label_column]}

    with training_args.main_process_first(desc="tokenizing"):
        return _map_replacing_columns(splits, encode, num_proc)


def tokenize_for_token_classification(
    splits, tokenizer, tokens_column, tags_column, max_length, training_args, num_proc=None
) -> DatasetDict:
    """Words are joined with spaces and tokenized as running text (as in pre-training and in the pipeline);
    the first piece of each word (`char_to_token` of its first character) carries its tag, every other piece
    and the special tokens -100."""

    def encode(batch):
        encoded = tokenizer([" ".join(words) for words in batch[tokens_column]], truncation=True, max_length=max_length)
        labels = []
        for row, (words, tags) in enumerate(zip(batch[tokens_column], batch[tags_column])):
            row_labels, start = [IGNORE_INDEX] * len(encoded["input_ids"][row]), 0
            for word, tag in zip(words, tags):
                first_piece = encoded.char_to_token(row, start)  # None once truncation cut the word off
                if first_piece is not None:
                    row_labels[first_piece] = tag
                start += len(word) + 1
            labels.append(row_labels)
        return {**encoded, "labels": labels}

    with training_args.main_process_first(desc="tokenizing"):
        return _map_replacing_columns(splits, encode, num_proc)


def _map_replacing_columns(splits: DatasetDict, function, num_proc: int | None) -> DatasetDict:
    """Apply a batched tokenizing `function`; each split drops its own raw columns (they may differ by file)."""
    return DatasetDict(
        {
            split: dataset.map(
                function, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc="Tokenizing"
            )
            for split, dataset in splits.items()
        }
    )


# -- metrics and baselines ---------------------------------------------------------------------------------------


def load_metric(name: str) -> evaluate.Metric:
    """A metric module shipped in training/metrics/ (the Hub's cannot be fetched offline), kept in memory so
    every process of a distributed run computes on the same gathered arrays without sharing cache files."""
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def classification_scores(predictions, references, num_labels: int, accuracy=None, f1=None) -> dict[str, float]:
    """Accuracy and macro-F1 over all `num_labels` classes (a class never predicted counts as F1 0)."""
    accuracy = accuracy or load_metric("accuracy")
    f1 = f1 or load_metric("f1")
    return {
        "accuracy": accuracy.compute(predictions=predictions, references=references)["accuracy"],
        "f1_macro": f1.compute(
            predictions=predictions, references=references, average="macro", labels=list(range(num_labels))
        )["f1"],
    }


def classification_metrics(num_labels: int):
    """compute_metrics for both tasks; positions labelled -100 are not scored. `num_rows` is how many labels
    were scored: under DDP it shows that padded duplicates were not counted."""
    accuracy, f1 = load_metric("accuracy"), load_metric("f1")

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = np.asarray(eval_prediction.predictions).reshape(-1)
        references = np.asarray(eval_prediction.label_ids).reshape(-1)
        scored = references != IGNORE_INDEX
        predictions, references = predictions[scored], references[scored]
        return {**classification_scores(predictions, references, num_labels, accuracy, f1), "num_rows": len(references)}

    return compute_metrics


def logits_to_predictions(logits, labels) -> torch.Tensor:
    """Keep class ids, not logits, between evaluation batches (Trainer's preprocess_logits_for_metrics)."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def scored_labels(dataset) -> list[int]:
    labels = np.concatenate([np.atleast_1d(np.asarray(row)) for row in dataset["labels"]])
    return labels[labels != IGNORE_INDEX].tolist()


def majority_class(raw, encoded, split: str, text_column: str, num_labels: int) -> dict[str, float]:
    """Always predict the most frequent training label."""
    majority = Counter(scored_labels(encoded["train"])).most_common(1)[0][0]
    references = scored_labels(encoded[split])
    return classification_scores([majority] * len(references), references, num_labels)


TFIDF_C_GRID = (1.0, 10.0, 100.0)


def tfidf_logreg(raw, encoded, split: str, text_column: str, num_labels: int) -> dict[str, float]:
    """TF-IDF of word 1-2-grams and case-sensitive character 1-4-grams (which see capitals, punctuation and
    layout, as a byte-level tokenizer does), then logistic regression; C is chosen on validation macro-F1,
    as the model's best checkpoint is."""

    def fit(c: float):
        features = make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char", ngram_range=(1, 4), lowercase=False, sublinear_tf=True, min_df=2),
        )
        return make_pipeline(features, LogisticRegression(C=c, max_iter=2000)).fit(
            raw["train"][text_column], encoded["train"]["labels"]
        )

    def scores(model, on: str) -> dict[str, float]:
        return classification_scores(model.predict(raw[on][text_column]), encoded[on]["labels"], num_labels)

    fitted = {c: fit(c) for c in TFIDF_C_GRID}
    best_c = max(TFIDF_C_GRID, key=lambda c: scores(fitted[c], "validation")["f1_macro"])
    return {**scores(fitted[best_c], split), "C": best_c}


BASELINES = {"majority_class": majority_class, "tfidf_logreg": tfidf_logreg}  # names a Task's `baselines` lists


# -- the script --------------------------------------------------------------------------------------------------


def main(argv: list[str] | dict | None = None) -> dict:
    started = time.perf_counter()
    model_args, data_args, training_args = parse_args((ModelArguments, DataArguments, TrainingArguments), argv)
    setup_logging(training_args)
    require_model_folder(model_args.model_name_or_path)
    base_config = AutoConfig.from_pretrained(
        model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code
    )
    task = resolve_task(data_args, base_config)
    check_arguments(task, base_config, data_args, training_args)
    resume_from = resume_or_start(training_args)
    input_column, label_column = task.column_flags(data_args)

    raw = load_data(data_args, training_args)
    require_columns(raw, task.column_flags(data_args))
    if not task.per_token:
        raw = raw.filter(lambda row: bool(row[input_column] and row[input_column].strip()))
    names = None if training_args.do_train else [base_config.id2label[i] for i in range(base_config.num_labels)]
    raw, names = encode_labels(raw, label_column, task.per_token, names)
    check_head_labels(base_config, task, names, model_args)
    if training_args.do_train:
        stratify = None if task.per_token else label_column
        raw = add_validation_split(raw, data_args.validation_split_percentage, training_args.seed, stratify)
    if "validation" not in raw and training_args.do_train:
        raise DataError(
            "Fine-tuning needs a validation split: pass --validation_files or --validation_split_percentage."
        )
    config = AutoConfig.from_pretrained(
        model_args.model_name_or_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
        trust_remote_code=model_args.trust_remote_code,
    )
    tokenizer = load_tokenizer(model_args, config.vocab_size)
    if data_args.max_seq_length > config.max_position_embeddings:
        logger.warning(
            "--max_seq_length %d exceeds the model's max_position_embeddings=%d: inputs are truncated to %d tokens.",
            data_args.max_seq_length,
            config.max_position_embeddings,
            config.max_position_embeddings,
        )
        data_args.max_seq_length = config.max_position_embeddings
    encoded = task.tokenize()(
        raw,
        tokenizer,
        input_column,
        label_column,
        data_args.max_seq_length,
        training_args,
        data_args.preprocessing_num_workers,
    )
    logger.info("Labels: %s; rows: %s", names, {split: len(d) for split, d in encoded.items()})

    set_seed(training_args.seed)  # the new head's initial weights
    model = load_model(task, config, model_args)
    check_disk_space(training_args, model)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    patience = data_args.early_stopping_patience if training_args.do_train else 0
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=encoded.get("train"),
        eval_dataset=encoded.get("validation"),
        processing_class=tokenizer,
        data_collator=task.data_collator(tokenizer),
        compute_metrics=classification_metrics(len(names)),
        preprocess_logits_for_metrics=logits_to_predictions,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)] if patience > 0 else None,
    )
    results = train_and_evaluate(trainer, resume_from, {"eval": encoded.get("validation"), "test": encoded.get("test")})

    write_run_record(
        trainer,
        task=task.pipeline_tag,
        preset=preset_of(model_args.model_name_or_path),
        data_args=data_args,
        split_sizes={split: len(dataset) for split, dataset in encoded.items()},
        results=results,
        started=started,
        baselines=lambda split: {
            name: BASELINES[name](raw, encoded, split, input_column, len(names))
            for name in (task.baselines if data_args.baselines else ())
        },
        labels=names,
        base_model=model_args.model_name_or_path,
        max_seq_length=data_args.max_seq_length,
        early_stopping_patience=patience,
        best_checkpoint=Path(trainer.state.best_model_checkpoint or "").name or None,
        epochs_run=trainer.state.epoch,
    )
    return {key: value for metrics in results.values() for key, value in metrics.items()}


if __name__ == "__main__":
    run_main(main)
