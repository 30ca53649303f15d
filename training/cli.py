"""What every script does first: parse its argument dataclasses, set up logging, resolve the checkpoint to resume."""

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import datasets
import transformers
from transformers import HfArgumentParser, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .loading import DataError

CONFIG_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def parse_args(dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> tuple:
    """Command-line flags, or one .json/.yaml file holding the same keys (`python -m training.pretrain run.yaml`)."""
    parser = HfArgumentParser(dataclass_types)
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].endswith(CONFIG_FILE_SUFFIXES):
        path = Path(argv[0])
        if not path.is_file():
            raise DataError(f"Config file {argv[0]} does not exist.")
        return parser.parse_json_file(path) if path.suffix == ".json" else parser.parse_yaml_file(path)
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args: TrainingArguments) -> logging.Logger:
    """The scripts' own messages at INFO on the main process; transformers and datasets at the Trainer's
    `--log_level` (warnings by default), so that progress bars and metrics are not drowned in cache notices."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger = logging.getLogger("training")
    logger.setLevel(logging.INFO if training_args.should_log else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    return logger


def newest_complete_checkpoint(output_dir: str) -> str | None:
    """The newest checkpoint-* folder whose trainer_state.json was written.

    The Trainer writes that file after the weights, optimizer and RNG states, so a run killed while saving
    leaves a newer folder without it; resuming from the complete one before it loses nothing.
    """
    folder = Path(output_dir)
    steps = {int(p.name.rsplit("-", 1)[1]): p for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir()
             and p.name.rsplit("-", 1)[1].isdigit()}  # fmt: skip
    for step in sorted(steps, reverse=True):
        try:
            json.loads((steps[step] / TRAINER_STATE_NAME).read_text())
            return str(steps[step])
        except (OSError, ValueError):
            logging.getLogger(__name__).warning(
                "Skipping %s: it was not completely written (the run stopped while saving it).", steps[step]
            )
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
    if not (Path(value) / "trainer_state.json").is_file():
        raise DataError(
            f"--resume_from_checkpoint {value} is not a Trainer checkpoint (no trainer_state.json in it). "
            "Pass a checkpoint-* folder written during training, or `last` for the newest one in --output_dir."
        )
    return value


def run_main(main: Callable):
    """The `__main__` entry: a DataError is the user's to fix, so it ends the run with its message, not a traceback."""
    try:
        main()
    except DataError as error:
        sys.exit(f"error: {error}")
