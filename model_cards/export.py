"""Package a run as a self-contained, hub-ready folder, written aside and moved into place at the end.

The model is loaded from the run with its own shipped code (`trust_remote_code=True`) and saved again with
`save_pretrained`, which writes config.json with the full `auto_map`, the code files, safetensors (sharded
at `max_shard_size`) and, for causal models, generation_config.json; the tokenizer is saved the same way,
then the card and its plot. Nothing else from the run folder (optimizer state, `training_args.bin`,
checkpoints, data) is copied. A failure at any step leaves the destination as it was.
"""

import shutil
import tempfile
from pathlib import Path

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
    run = load_run(run_dir)  # refuses runs without results before any work is done
    destination = Path(destination).absolute()
    run_dir = run.directory.absolute()
    if destination == run_dir or destination in run_dir.parents:
        raise ValueError(f"Export destination {destination} would replace the run folder {run_dir}: pick another.")
    _refuse_non_empty(destination, overwrite)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    try:
        save_model_and_tokenizer(run_dir, run.task, staging, max_shard_size)
        write_model_card(run_dir, staging, repo_id=repo_id or f"./{destination.name}")
        check_checkpoint(staging, local_paths=(run_dir, destination))
        staging.chmod(0o755)  # mkdtemp makes the folder private, safetensors writes its files 0600
        for path in staging.iterdir():
            path.chmod(0o644)
        _move_into_place(staging, destination, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def save_model_and_tokenizer(run_dir: Path, task: str, output_dir: Path, max_shard_size: int | str) -> None:
    import transformers  # here, not at the top: writing a card or pushing a folder does not need torch
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(run_dir, trust_remote_code=True)
    auto_class = _auto_class(config, task)
    model = getattr(transformers, auto_class).from_pretrained(run_dir, trust_remote_code=True, dtype="auto")
    model.save_pretrained(output_dir, max_shard_size=max_shard_size)
    AutoTokenizer.from_pretrained(run_dir, trust_remote_code=True).save_pretrained(output_dir)


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


def _move_into_place(staging: Path, destination: Path, overwrite: bool) -> None:
    """Rename the finished folder onto `destination`; an old one is set aside until the rename succeeded."""
    _refuse_non_empty(destination, overwrite)  # again: something may have appeared meanwhile
    if not destination.exists():
        staging.rename(destination)
        return
    previous = staging.with_name(staging.name.replace(".partial-", ".previous-"))
    destination.rename(previous)
    try:
        staging.rename(destination)
    except BaseException:
        previous.rename(destination)
        raise
    shutil.rmtree(previous)
