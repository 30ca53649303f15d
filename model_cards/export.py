"""Package a run as a self-contained, hub-ready folder, written beside the destination and swapped in at the end.

The model is loaded from the run with its own shipped code (`trust_remote_code=True`) and saved again with
`save_pretrained`, which writes config.json with the full `auto_map`, the code files, safetensors (sharded
at `max_shard_size`) and, for causal models, generation_config.json; the task's processor (tokenizer, image
processor, ...) is saved the same way, then the card and its plot. Nothing else from the run folder (optimizer state, `training_args.bin`,
checkpoints, data) is copied. The folder is written through `replacing_directory`, so a failure or a kill at
any step leaves the previous export complete, or the new one: never a mix, never nothing.
"""

import os
import shutil
from pathlib import Path

import transformers

from custom_transformer.checkpoint_io import (
    naming_damaged_weights,
    refuse_untrusted_weights,
    replacing_directory,
    restore_interrupted_replace,
)
from custom_transformer.verified_loading import UnverifiedCodeError
from custom_transformer.verify import judge, read_folder
from training.tasks import TASKS

from .card import write_model_card
from .checkpoint import check_checkpoint
from .run import load_run


def export_run(
    run_dir: str | Path,
    destination: str | Path,
    *,
    overwrite: bool = False,
    max_shard_size: int | str = "5GB",
    repo_id: str | None = None,
) -> Path:
    """Write the hub-ready folder for a run to `destination` and return it.

    Refuses a non-empty `destination` unless `overwrite`; `repo_id` (the Hub id it will be pushed to) goes
    into the card's load snippet, which otherwise loads the folder itself.
    """
    run = load_run(run_dir)  # refuses runs without results (or with unreadable weights) before any work is done
    destination = Path(destination).absolute()
    run_dir = run.directory.absolute()
    if destination == run_dir or destination in run_dir.parents:
        raise ValueError(f"Export destination {destination} would replace the run folder {run_dir}: pick another.")
    refuse_unverified_code(run_dir)  # before the run's code is run to load it
    _restore_killed_export(destination)  # so that --overwrite is judged on the export the user last had
    _refuse_non_empty(destination, overwrite)
    # Exactly the exported files: an earlier export's extra shards or stray files are not carried over.
    with replacing_directory(destination, carry_over=False) as staging:
        save_model_and_processor(run_dir, run.task, staging, max_shard_size)
        write_model_card(run_dir, staging, repo_id=repo_id or f"./{destination.name}")
        check_checkpoint(staging, local_paths=(run_dir, destination), processor=TASKS[run.task].processor_kind)
        staging.chmod(0o755)  # mkdtemp makes the folder private, safetensors writes its files 0600
        for path in staging.iterdir():
            path.chmod(0o644)
        _refuse_non_empty(destination, overwrite)  # again: something may have appeared meanwhile
    return destination


def refuse_unverified_code(run_dir: Path) -> None:
    """The run's code is loaded with trust_remote_code and shipped: it must be exactly a release's (or the
    installed package's). Its checkpoint-N/ folders are not exported and not read."""
    report = judge(read_folder(run_dir, nested=False))
    if not report.verified:
        raise UnverifiedCodeError(f"Refusing to export {run_dir}: its code does not verify.\n{report.text()}")


def _restore_killed_export(destination: Path) -> None:
    """Put back what a killed export left beside `destination`: `replacing_directory`'s leftovers (its own and
    those of a `save_pretrained` nested in its staging folder), and those of exports before this one, which
    renamed twice and could leave the old export as `.NAME.previous-*`."""
    beside, name = destination.parent, destination.name
    previous = sorted(beside.glob(f".{name}.previous-*"), key=os.path.getmtime)
    if previous and not destination.exists():
        previous.pop().rename(destination)
    for leftover in [*previous, *beside.glob(f".{name}.partial-*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    restore_interrupted_replace(destination)


def save_model_and_processor(run_dir: Path, task: str, output_dir: Path, max_shard_size: int | str) -> None:
    """The model, and what prepares its inputs (the task's processor: a tokenizer, an image processor, ...)."""
    config = transformers.AutoConfig.from_pretrained(run_dir, trust_remote_code=True)
    auto_class = getattr(transformers, _auto_class(config, task))
    # Judged here, not left to the run's own code: a run saved by an older release of it may not check.
    with naming_damaged_weights(run_dir):
        model, loading_info = auto_class.from_pretrained(
            run_dir, trust_remote_code=True, dtype="auto", output_loading_info=True
        )
    refuse_untrusted_weights(model, loading_info, run_dir)
    model.save_pretrained(output_dir, max_shard_size=max_shard_size)
    processor = getattr(transformers, TASKS[task].processor_kind.auto_class)
    processor.from_pretrained(run_dir, trust_remote_code=True).save_pretrained(output_dir)


def _auto_class(config, task: str) -> str:
    """The Auto class that loads the saved head: the `auto_map` entry of `architectures[0]`, else the task's."""
    architecture = (getattr(config, "architectures", None) or [None])[0]
    for auto_class, reference in (getattr(config, "auto_map", None) or {}).items():
        if auto_class != "AutoConfig" and reference.rsplit(".", 1)[-1] == architecture:
            return auto_class
    return TASKS[task].auto_class


def _refuse_non_empty(destination: Path, overwrite: bool) -> None:
    if destination.exists() and not destination.is_dir():
        raise FileExistsError(f"Export destination {destination} exists and is not a folder.")
    if destination.is_dir() and any(destination.iterdir()) and not overwrite:
        raise FileExistsError(f"Export destination {destination} is not empty: pass --overwrite to replace it.")
