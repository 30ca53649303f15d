"""What `training.pretrain` and `training.finetune` share, in the order a script uses it: arguments, logging,
resuming, reading the data with the checks that must fail before training starts (each `DataError` names
the problem and the fix), and recording the run.
"""

import ast
import inspect
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import evaluate
import torch
import transformers
from datasets import DatasetDict, load_dataset, load_from_disk
from transformers import HfArgumentParser, Trainer
from transformers import TrainingArguments as HFTrainingArguments
from transformers.modelcard import extract_hyperparameters_from_trainer
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from custom_transformer import CustomTransformerConfig
from custom_transformer.checkpoint_io import DamagedCheckpointError, naming_damaged_weights

from .run_record import RUN_INFO, DatasetRecord, InvalidRunRecord, RunRecord, portable_path
from .tasks import TASKS

logger = logging.getLogger("training")

CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")
# File suffix -> `datasets` builder.
BUILDERS = {".txt": "text", ".text": "text", ".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """The data, paths, flags or tokenizer given to a script cannot work; raised before any training step."""


@dataclass
class DataFileArguments:
    """Where a script's data comes from, and what run_info.json says about it."""

    train_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "Training data: .txt, .json/.jsonl, .csv or .parquet files, or image folders (one per class)."
        },
    )
    validation_files: list[str] | None = field(default=None, metadata={"help": "Validation data, same formats."})
    test_files: list[str] | None = field(default=None, metadata={"help": "Test data, scored with --do_predict."})
    dataset_dir: str | None = field(default=None, metadata={"help": "A dataset saved with save_to_disk, not files."})
    validation_split_percentage: float = field(
        default=5, metadata={"help": "Percent of train held out for validation when no validation data is given."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    dataset_name: str | None = field(default=None, metadata={"help": "Dataset name for run_info.json."})
    dataset_license: str = field(default="unknown", metadata={"help": "Dataset licence for run_info.json."})
    dataset_source: str = field(default="local files", metadata={"help": "Where the data came from (run_info)."})

    def files(self) -> dict[str, list[str] | None]:
        return {"train": self.train_files, "validation": self.validation_files, "test": self.test_files}


@dataclass
class TrainingArguments(HFTrainingArguments):
    """The Trainer's arguments, plus the guard transformers 5 dropped: a run never writes into another's folder."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace what --output_dir holds (another run's model, checkpoints and results)."},
    )


# -- arguments and logging ---------------------------------------------------------------------------------------


def parse_args(dataclass_types: tuple[type, ...], argv: list[str] | dict | None = None) -> tuple:
    """Command-line flags, one .json/.yaml file holding the same keys (`python -m training.pretrain run.yaml`),
    or a dict of them (what the demo passes after reading its config files)."""
    parser = HfArgumentParser(dataclass_types)
    if isinstance(argv, dict):
        return parser.parse_dict(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(CONFIG_FILE_SUFFIXES):
        path = Path(argv[0])
        if not path.is_file():
            raise DataError(f"Config file {argv[0]} does not exist.")
        return parser.parse_json_file(path) if path.suffix == ".json" else parser.parse_yaml_file(path)
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args: TrainingArguments) -> None:
    """The scripts' own messages at INFO on the main process; transformers and datasets at the Trainer's
    `--log_level` (warnings by default), so that progress bars and metrics are not drowned in cache notices."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(logging.INFO if training_args.should_log else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)


def run_main(main: Callable):
    """The `__main__` entry: a DataError is the user's to fix, so it ends the run with its message, not a traceback."""
    try:
        main()
    except DataError as error:
        sys.exit(f"error: {error}")


# -- resuming ----------------------------------------------------------------------------------------------------


def newest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint-* folder whose trainer_state.json was written.

    The Trainer writes that file after the weights, optimizer and RNG states, so a run killed while saving
    leaves a newer folder without it; resuming from the complete one before it loses nothing.
    """
    steps = {}
    for folder in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = folder.name.rsplit("-", 1)[1]
        if folder.is_dir() and step.isdigit():
            steps[int(step)] = folder
    for step in sorted(steps, reverse=True):
        try:
            json.loads((steps[step] / TRAINER_STATE_NAME).read_text())
            return str(steps[step])
        except (OSError, ValueError):
            logger.warning("Skipping %s: it was not completely written (the run stopped while saving it).", steps[step])
    return None


def checkpoint_to_resume(training_args: TrainingArguments) -> str | None:
    """`--resume_from_checkpoint PATH`, or `true`/`last` for the newest checkpoint in output_dir; checked now."""
    value = training_args.resume_from_checkpoint
    if value is None or value.lower() in ("", "false", "none"):
        return None
    if value.lower() in ("true", "last", "latest"):
        last = newest_complete_checkpoint(training_args.output_dir)
        if last is None:
            raise DataError(
                f"--resume_from_checkpoint {value}: there is no checkpoint-* folder in {training_args.output_dir}. "
                "Pass the path of a checkpoint folder, or drop the flag to start from scratch."
            )
        return last
    if not (Path(value) / TRAINER_STATE_NAME).is_file():
        raise DataError(
            f"--resume_from_checkpoint {value} is not a Trainer checkpoint (no {TRAINER_STATE_NAME} in it). "
            "Pass a checkpoint-* folder written during training, or `last` for the newest one in --output_dir."
        )
    return value


def resume_or_start(training_args: TrainingArguments) -> str | None:
    """The checkpoint to resume from (None: a new run), once the run is known to train at all and to own
    --output_dir: what both scripts check before anything is loaded."""
    resume_from = checkpoint_to_resume(training_args)
    check_output_dir(training_args, resume_from)
    check_training_length(training_args)
    return resume_from


def check_output_dir(training_args: TrainingArguments, resume_from: str | None):
    """Refuse to write into a folder holding another run: its checkpoints would be rotated away and its model,
    config and run_info.json overwritten. Resuming that run, or --overwrite_output_dir, is the user's call."""
    folder = Path(training_args.output_dir)
    if resume_from is not None or training_args.overwrite_output_dir or not folder.is_dir():
        return
    markers = [RUN_INFO, "config.json", TRAINER_STATE_NAME, "all_results.json"]
    found = [name for name in markers if (folder / name).is_file()]
    found += sorted(p.name for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*"))[:3]
    if found:
        try:
            what = f"a {RunRecord.read(folder).task} run"
        except InvalidRunRecord:
            what = "another run"
        raise DataError(
            f"--output_dir {folder} already holds {what} ({', '.join(found)}). Pass a new --output_dir, "
            "--resume_from_checkpoint last to continue that run, or --overwrite_output_dir to replace it."
        )


def check_training_length(training_args: TrainingArguments):
    if training_args.do_train and training_args.max_steps == 0:
        raise DataError(
            "--max_steps 0 trains nothing: pass a positive number of steps, or -1 (the default) to train "
            "--num_train_epochs epochs."
        )


def check_disk_space(training_args: TrainingArguments, model):
    """A checkpoint (weights, and the optimizer's two moments for each) must fit on the disk before training
    starts: a full disk mid-save leaves a half-written checkpoint and the Trainer's cryptic iostream error."""
    if not training_args.do_train or training_args.save_strategy == "no":
        return
    folder = Path(training_args.output_dir)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path.cwd())
    needed = 3 * sum(p.numel() * p.element_size() for p in model.parameters())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise DataError(
            f"{existing} has {free / 2**20:.1f} MiB free, less than one checkpoint of this model needs "
            f"({needed / 2**20:.1f} MiB of weights and optimizer state): free some space, or pass an "
            "--output_dir on another disk (or --save_strategy no)."
        )


# -- data --------------------------------------------------------------------------------------------------------


def load_data(data_args: DataFileArguments, training_args: TrainingArguments, **builder_kwargs) -> DatasetDict:
    """The splits this run uses, as the `--do_*` flags ask: train for --do_train, test for --do_predict, and
    validation when given (a share of train is held out for it when training without one)."""
    args = training_args
    if not (args.do_train or args.do_eval or args.do_predict):
        raise DataError(
            "Nothing to do: pass --do_train, --do_eval and/or --do_predict (as in the transformers examples)."
        )
    if data_args.test_files and not args.do_predict:
        raise DataError("--test_files are scored only with --do_predict: add --do_predict, or drop --test_files.")
    splits = load_splits(data_args.files(), data_args.dataset_dir, **builder_kwargs)
    held_out = args.do_train and data_args.validation_split_percentage > 0  # validation carved from train
    needed = {"train": args.do_train, "test": args.do_predict, "validation": args.do_eval and not held_out}
    flags = {"train": "--do_train", "validation": "--do_eval", "test": "--do_predict"}
    for split in SPLITS:
        if needed[split] and split not in splits:
            raise DataError(
                f"{flags[split]} needs a {split} split: pass --{split}_files"
                + (f" (the dataset in {data_args.dataset_dir} has {list(splits)})." if data_args.dataset_dir else ".")
            )
    splits = DatasetDict(
        {split: splits[split] for split in SPLITS if split in splits and (needed[split] or split == "validation")}
    )
    require_rows(splits)
    return splits


def load_splits(files: dict[str, list[str] | None], dataset_dir: str | None = None, **builder_kwargs) -> DatasetDict:
    """The splits named in `files` (e.g. {"train": [...], "validation": None}), or a `save_to_disk` folder.
    `builder_kwargs` go to the text builder (.txt files), e.g. sample_by="paragraph"."""
    if dataset_dir is not None:
        return _load_saved(dataset_dir)
    if not any(files.values()):
        raise DataError("No data given: pass data files (txt/json/jsonl/csv/parquet) or --dataset_dir.")
    return DatasetDict({split: _load_files(split, paths, builder_kwargs) for split, paths in files.items() if paths})


def _load_files(split: str, paths: list[str], builder_kwargs: dict) -> datasets.Dataset:
    folders = [path for path in paths if Path(path).is_dir()]
    if folders:
        return _load_image_folders(split, paths, folders)
    for path in paths:
        if not Path(path).is_file():
            raise DataError(f"{split} file {path} does not exist (current directory: {os.getcwd()}).")
        if _is_blank(Path(path)):
            raise DataError(f"{split} file {path} is empty: the {split} split would have 0 rows.")
        if Path(path).suffix.lower() != ".parquet":
            _require_utf8(split, Path(path))
    suffixes = {Path(p).suffix.lower() for p in paths}
    unknown = suffixes - set(BUILDERS)
    if unknown:
        raise DataError(
            f"{split} files have unsupported suffix {', '.join(sorted(unknown))}. "
            f"Use one of {', '.join(BUILDERS)}, or save a dataset with Dataset.save_to_disk and pass --dataset_dir."
        )
    builders = {BUILDERS[s] for s in suffixes}
    if len(builders) > 1:
        raise DataError(f"{split} files mix formats ({', '.join(sorted(suffixes))}): give one format per split.")
    builder = builders.pop()
    kwargs = builder_kwargs if builder == "text" else {}
    try:
        return load_dataset(builder, data_files={split: paths}, split=split, **kwargs)
    except Exception as error:  # datasets' messages do not say which file or flag is at fault
        raise DataError(
            f"Could not read the {split} files {paths} as {builder} data ({type(error).__name__}: {error}). "
            "Check that every file is valid and that they all share the same columns."
        ) from error


def _load_image_folders(split: str, paths: list[str], folders: list[str]) -> datasets.Dataset:
    """Image folders (`datasets`' imagefolder): an `image` column, and a `label` column named by the subfolders."""
    if len(folders) != len(paths):
        raise DataError(f"{split} files mix folders and files ({paths}): pass image folders, or data files.")
    try:
        dataset = load_dataset("imagefolder", data_files={split: [f"{folder}/**" for folder in folders]}, split=split)
    except Exception as error:  # e.g. a folder without one image in it
        raise DataError(
            f"Could not read the {split} folders {folders} as image folders ({type(error).__name__}: {error}). "
            "Each needs one subfolder per class, holding that class's images."
        ) from error
    if "label" not in dataset.column_names:
        raise DataError(
            f"The {split} folders {folders} hold images but no class subfolders: put each class's images in a "
            "subfolder named after the class (train/cat/1.png, train/dog/2.png)."
        )
    return dataset


def _require_utf8(split: str, path: Path):
    """`datasets` reads text, JSON and CSV as UTF-8 and fails with a traceback that names neither file nor line."""
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{split} file {path} is not UTF-8: line {number} has byte {line[error.start]:#04x} at column "
                    f"{error.start + 1}. Convert the file (e.g. `iconv -f latin1 -t utf-8`) and run again."
                ) from None


def _is_blank(path: Path) -> bool:
    with path.open("rb") as f:
        return not f.read(1 << 16).strip() and path.stat().st_size <= 1 << 16


def _load_saved(dataset_dir: str) -> DatasetDict:
    path = Path(dataset_dir)
    if not path.is_dir():
        raise DataError(f"--dataset_dir {dataset_dir} does not exist (current directory: {os.getcwd()}).")
    if not ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        raise DataError(
            f"--dataset_dir {dataset_dir} is not a dataset saved with save_to_disk (no dataset_dict.json or "
            "state.json). Pass data files with --train_files instead."
        )
    loaded = load_from_disk(str(path))
    return loaded if isinstance(loaded, DatasetDict) else DatasetDict({"train": loaded})


def require_rows(splits: DatasetDict):
    for name, split in splits.items():
        if len(split) == 0:
            raise DataError(f"The {name} split is empty (0 rows): check the file or the filter that produced it.")


def require_columns(splits: DatasetDict, columns: dict[str, str]):
    """`columns` maps a column name to the flag that chooses it, so the error can name the fix."""
    for split, dataset in splits.items():
        for column, flag in columns.items():
            if column not in dataset.column_names:
                raise DataError(
                    f"The {split} split has no column {column!r}; its columns are {dataset.column_names}. "
                    f"Rename the column in the data or pass {flag} <one of those>."
                )


def add_validation_split(
    splits: DatasetDict, percentage: float, seed: int, stratify_by_column: str | None = None
) -> DatasetDict:
    """Hold out `percentage` of train for validation when none was given (label proportions kept if asked)."""
    if "validation" in splits or "train" not in splits or percentage <= 0:
        return splits
    n_train = len(splits["train"])
    if round(n_train * percentage / 100) < 1:
        raise DataError(
            f"The train split has {n_train} rows, too few to hold out {percentage}% for validation: "
            "pass --validation_files, or raise --validation_split_percentage."
        )
    try:
        parts = splits["train"].train_test_split(
            test_size=percentage / 100, seed=seed, stratify_by_column=stratify_by_column
        )
    except ValueError:  # a label too rare to appear on both sides: a plain random split still works
        logger.warning("Some label is too rare to stratify the validation split; holding out rows at random.")
        parts = splits["train"].train_test_split(test_size=percentage / 100, seed=seed)
    splits["train"], splits["validation"] = parts["train"], parts["test"]
    return splits


def check_tokenizer_fits(tokenizer, vocab_size: int, model_source: str, tokenizer_source: str):
    """A tokenizer that emits ids the embedding table does not have fails deep in forward with an index error."""
    if len(tokenizer) > vocab_size:
        raise DataError(
            f"Tokenizer/model vocabulary mismatch: the tokenizer from {tokenizer_source} has {len(tokenizer)} tokens "
            f"but the model from {model_source} embeds only vocab_size={vocab_size}. Use the tokenizer the model "
            "was trained with (it is saved next to every checkpoint), or build the model with "
            f"vocab_size >= {len(tokenizer)}."
        )


def require_model_folder(path: str):
    if not (Path(path) / "config.json").is_file():
        raise DataError(
            f"--model_name_or_path {path} is not a model folder (no config.json): "
            "pass the output_dir of a training run, or any saved checkpoint."
        )


def preset_of(model_name_or_path: str | None) -> str:
    """The architecture preset a saved model was trained from, as its run_info.json says; else "custom"."""
    if model_name_or_path is None:
        return "custom"
    try:
        return RunRecord.read(model_name_or_path).preset
    except InvalidRunRecord:
        return "custom"


# -- model configs from the command line ----------------------------------------------------------------------


def parse_overrides(text: str | None) -> dict:
    """ "a=1,b=x" or a JSON object -> dict; values are Python literals where they parse as one."""
    if not text:
        return {}
    if text.lstrip().startswith("{"):
        return json.loads(text)
    overrides = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise DataError(f"--config_overrides item {item!r} is not key=value (e.g. hidden_size=128).")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides


CONFIG_FIELDS = set(inspect.signature(CustomTransformerConfig.__init__).parameters) - {"self", "kwargs"}


def config_overrides(text: str | None) -> dict:
    """--config_overrides, refused when it names a field the config does not have."""
    overrides = parse_overrides(text)
    unknown = sorted(set(overrides) - CONFIG_FIELDS)
    if unknown:
        raise DataError(f"Unknown config field(s) in --config_overrides: {unknown}. Known: {sorted(CONFIG_FIELDS)}.")
    return overrides


@contextmanager
def weights_named_when_damaged(model_name_or_path: str):
    """Around `from_pretrained`: damaged weights (ours or another package's model) end the run with the message
    naming the file and the fix, instead of safetensors' bare "incomplete metadata"."""
    try:
        with naming_damaged_weights(model_name_or_path):
            yield
    except DamagedCheckpointError as error:
        raise DataError(str(error)) from None


def perplexity(loss: float) -> float:
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


# -- the run record ----------------------------------------------------------------------------------------------


def train_and_evaluate(
    trainer: Trainer,
    resume_from: str | None,
    evaluated: dict,
    derived: Callable[[str, dict], dict] | None = None,
) -> dict[str, dict]:
    """The Trainer's steps the `--do_*` flags ask for, each logged and saved as `<step>_results.json`: train (then
    save the model with its code and the tokenizer), evaluate, predict. `evaluated` maps "eval" and "test" to
    their datasets; `derived(step, metrics)` adds numbers computed from the Trainer's (perplexity)."""
    args, results = trainer.args, {}
    if args.do_train:
        train_result = trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_model()
        trainer.save_state()
        results["train"] = {**train_result.metrics, "train_samples": len(trainer.train_dataset)}
    if args.do_eval:
        results["eval"] = trainer.evaluate(evaluated["eval"], metric_key_prefix="eval")
    if args.do_predict:
        results["test"] = trainer.predict(evaluated["test"], metric_key_prefix="test").metrics
    for step, metrics in results.items():
        if step != "train":
            metrics[f"{step}_samples"] = len(evaluated[step])
            metrics.update(derived(step, metrics) if derived else {})
        trainer.log_metrics(step, metrics)
        trainer.save_metrics(step, metrics)
    return results


def hardware(training_args: TrainingArguments) -> str:
    """The device the Trainer trained on (`--use_cpu` wins over a visible GPU), process count and torch."""
    if training_args.device.type == "cuda":
        device = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    return f"{device}; {training_args.world_size} training process(es); torch {torch.__version__}"


MODEL_SIZE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")


def write_run_record(
    trainer: Trainer,
    *,
    task: str,
    preset: str,
    data_args: DataFileArguments,
    split_sizes: dict[str, int],
    results: dict[str, dict],
    started: float,
    baselines: Callable[[str], dict],
    labels: list[str] | None = None,
    base_model: str | None = None,
    **hyperparameters,
) -> RunRecord | None:
    """run_info.json for a run that trained, from the main process: the metrics of the test split when it was
    scored (else validation) next to `baselines(split)` on the same split, the Trainer's own hyperparameter
    summary, the model's size and `hyperparameters`."""
    if not trainer.args.do_train or not trainer.is_world_process_zero():
        return None
    if not ("test" in results or "eval" in results):
        logger.warning("No %s: the run was not evaluated (pass --do_eval or --do_predict).", RUN_INFO)
        return None
    step = "test" if "test" in results else "eval"
    split = "test" if step == "test" else "validation"
    scored = results.get(step, {})
    names = (*TASKS[task].metrics, "num_rows")
    metrics = {name: scored[f"{step}_{name}"] for name in names if f"{step}_{name}" in scored}
    files = [path for paths in data_args.files().values() for path in paths or ()] or [data_args.dataset_dir]
    config = trainer.model.config
    record = RunRecord(
        task=task,
        preset=preset,
        base_model=portable_path(base_model),
        # A card names a Hub base model in its metadata, never a folder of this machine.
        base_model_is_local=Path(base_model).is_dir() if base_model else None,
        dataset=DatasetRecord(
            name=data_args.dataset_name or Path(files[0]).parent.name or Path(files[0]).stem,
            license=data_args.dataset_license,
            source=data_args.dataset_source,
            files=[portable_path(f) for f in files],
            split_sizes=split_sizes,
            labels=labels,
        ),
        metrics=metrics,
        evaluated_split=split,
        baselines=baselines(split),
        wall_time_seconds=round(time.perf_counter() - started, 1),
        hardware=hardware(trainer.args),
        hyperparameters={
            **extract_hyperparameters_from_trainer(trainer),
            "model": {key: getattr(config, key) for key in MODEL_SIZE_KEYS if hasattr(config, key)},
            **hyperparameters,
        },
    )
    record.write(trainer.args.output_dir)
    return record


# -- what every task's code uses ---------------------------------------------------------------------------------

METRICS_DIR = Path(__file__).parent / "metrics"


def load_metric(name: str) -> evaluate.Metric:
    """A metric module shipped in training/metrics/ (the Hub's cannot be fetched offline), kept in memory so
    every process of a distributed run computes on the same gathered arrays without sharing cache files."""
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def save_splits(splits: DatasetDict, folder: Path) -> Path:
    """`save_to_disk` into a staging folder renamed to `folder` when complete: a killed write leaves no half dataset
    that a later run would take for a finished one."""
    staging = folder.with_name(f".{folder.name}.writing")
    shutil.rmtree(staging, ignore_errors=True)
    splits.save_to_disk(staging)
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    return folder


def map_replacing_columns(splits: DatasetDict, function, num_proc: int | None) -> DatasetDict:
    """Apply a batched tokenizing `function`; each split drops its own raw columns (they may differ by file)."""
    return DatasetDict(
        {
            split: dataset.map(
                function, batched=True, num_proc=num_proc, remove_columns=dataset.column_names, desc="Tokenizing"
            )
            for split, dataset in splits.items()
        }
    )
