"""Checkpoint folders written in one step and refused when damaged. Shipped inside checkpoints with the model code.

Writing: a kill or a full disk leaves the old complete folder or the new one, never a mix.

Everything is written into a hidden sibling (`.NAME.saving-*`), flushed to disk, and exchanged with the target by
one `renameat2(RENAME_EXCHANGE)` (Linux 3.15+). Where that call is missing it falls back to two renames; a kill
between them leaves the old folder as `.NAME.old-*`, which the next save through here puts back first.

Files of the target that the new save does not write (a Trainer's checkpoints and results beside the model) are
carried over as hard links, so replacing a model inside a training run's folder loses none of them. Weight files
of an earlier save are not carried over: as in transformers' own clean-up, stale shards never outlive a save.

Reading: transformers fills a weight the checkpoint lacks at random and only logs it, and safetensors names neither
the file nor the fix for a truncated one. Every reader of weights here (the model's `from_pretrained`, convert,
export, the cards and the training scripts) refuses both with one `DamagedCheckpointError` naming the file and the
fix: `naming_damaged_weights` around a load, `refuse_untrusted_weights` after it, `open_weights` for headers.
"""

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedModel
from transformers.utils import logging

logger = logging.get_logger(__name__)

# What a model save owns: an earlier save's files with these names are replaced, never carried over.
WEIGHT_FILE_PATTERNS = ("model*.safetensors", "model*.safetensors.index.json", "pytorch_model*.bin*")
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@contextlib.contextmanager
def replacing_directory(target: str | os.PathLike, *, carry_over: bool = True) -> Iterator[Path]:
    """Yield an empty folder beside `target` to write into; when the block ends without error, that folder
    (plus what `target` held that was not rewritten) becomes `target` in one step. On error nothing changes.

    `carry_over=False` for a folder that must hold exactly what was written (an export): nothing is carried over.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted_replace(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    os.chmod(staging, target.stat().st_mode & 0o7777 if target.is_dir() else 0o777 & ~_umask())  # mkdtemp: 0700
    try:
        yield staging
        if carry_over and target.is_dir():
            _carry_over(target, staging)
        _fsync_tree(staging)
        if not target.exists():
            os.rename(staging, target)
        elif _exchange(staging, target):
            shutil.rmtree(staging)  # now the old folder
        else:
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(target, old)
            os.rename(staging, target)
            shutil.rmtree(old)
        fsync_directory(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def restore_interrupted_replace(target: Path) -> None:
    """Undo what a kill between the two fallback renames left: the old folder beside, the target missing.
    Staging folders of saves that never finished are incomplete by definition and are removed."""
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not target.exists():
        os.rename(olds.pop(), target)
    # A save nested in another's staging folder (save_pretrained inside an export) leaves "..NAME.saving-*.saving-*".
    staged = [*target.parent.glob(f".{target.name}.saving-*"), *target.parent.glob(f"..{target.name}.saving-*")]
    for leftover in [*olds, *staged]:
        shutil.rmtree(leftover, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _carry_over(target: Path, staging: Path) -> None:
    for entry in target.iterdir():
        destination = staging / entry.name
        if destination.exists() or any(fnmatch(entry.name, pattern) for pattern in WEIGHT_FILE_PATTERNS):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, destination, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, destination)


def _link_or_copy(source, destination) -> None:
    try:
        os.link(source, destination, follow_symlinks=False)
    except OSError:
        shutil.copy2(source, destination, follow_symlinks=False)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot (then the caller renames twice)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _fsync_tree(folder: Path) -> None:
    """Flush every new file and folder to disk before the swap makes them the checkpoint."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
        fsync_directory(Path(root))


def fsync_directory(folder: Path) -> None:
    """Make a rename or removal in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def replaceable_in_one_step(target: Path) -> bool:
    """Whether a save can go through a staging sibling that then replaces the folder (`replacing_directory`).

    A file is left to transformers, which refuses it. A mount point or a read-only parent (a container volume)
    has no room for a sibling on the same file system: it is written in place, as transformers does.
    """
    if target.is_file():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(target) or not os.access(target.parent, os.W_OK):
        logger.warning(
            f"Saving into {target} file by file: its parent folder cannot hold the staging folder that would replace "
            "it in one step, so a save interrupted now can leave a mix of old and new files."
        )
        return False
    return True


def is_writing_rank(is_main_process: bool) -> bool:
    """Only global rank 0 writes, as transformers decides from 5.15 on (earlier releases let every rank write)."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return is_main_process and (not distributed or torch.distributed.get_rank() == 0)


# -- damaged checkpoints ---------------------------------------------------------------------------------------------
# One vocabulary for every reader of weights (the model's `from_pretrained`, convert, export, cards, the scripts):
# one exception, one fix, one message per kind of damage (unreadable, missing tensors), one tensor-name check.

DAMAGED_WEIGHTS_FIX = "copy the checkpoint again, or save it again from a model that loads"
SAFE_WEIGHTS, SAFE_WEIGHTS_INDEX = "model.safetensors", "model.safetensors.index.json"


class DamagedCheckpointError(SafetensorError, ValueError):
    """Weights that cannot be trusted; the message names the file and the fix. A `SafetensorError`, so code that
    already catches safetensors' own error for an unreadable file catches this one too, and a `ValueError`, as any
    other bad input."""


@contextlib.contextmanager
def naming_damaged_weights(name_or_path, subfolder: str | None = None) -> Iterator[None]:
    """Around a load: safetensors' bare "incomplete metadata" becomes a `DamagedCheckpointError` naming the file
    and the fix."""
    try:
        yield
    except DamagedCheckpointError:
        raise
    except SafetensorError as error:
        raise DamagedCheckpointError(unreadable_weights_message(name_or_path, subfolder, error)) from None


def refuse_untrusted_weights(
    model: PreTrainedModel, loading_info: dict, name_or_path, subfolder: str | None = None, on_purpose: str = ""
) -> None:
    """After a load with `output_loading_info=True`: raise when a weight was filled at random that the checkpoint
    should have held (`untrusted_missing_keys`). `on_purpose` names the caller's way to ask for new weights."""
    missing = untrusted_missing_keys(model, loading_info)
    if missing:
        unexpected = loading_info["unexpected_keys"]
        raise DamagedCheckpointError(
            missing_weights_message(model, name_or_path, subfolder, missing, unexpected, on_purpose)
        )


def untrusted_missing_keys(model: PreTrainedModel, loading_info: dict) -> list[str]:
    """The weights a load filled at random that the checkpoint should have held.

    Only a head the checkpoint never had may be missing (a causal-LM checkpoint loaded for classification): the
    checkpoint was saved from another class, and it holds none of that module's weights. The backbone, and any
    weight of the class that saved it, must all be there; tied weights are never saved.
    """
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    missing = set(loading_info["missing_keys"]) - tied
    saved_by_this_class = type(model).__name__ in (model.config.architectures or ())
    backbone = "" if model.base_model is model else f"{model.base_model_prefix}."
    loaded_modules = {key.rpartition(".")[0] for key in model.state_dict().keys() - missing - tied}

    def new_head(key: str) -> bool:
        return not (saved_by_this_class or key.startswith(backbone) or key.rpartition(".")[0] in loaded_modules)

    return sorted(key for key in missing if not new_head(key))


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a saved model: the shards its index names, else the single file."""
    index = folder / SAFE_WEIGHTS_INDEX
    if not index.is_file():
        return [folder / SAFE_WEIGHTS]
    try:
        return [folder / shard for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        message = f"{index} is not a valid shard index ({type(error).__name__}: {error}): {DAMAGED_WEIGHTS_FIX}."
        raise DamagedCheckpointError(message) from None


@contextlib.contextmanager
def open_weights(path: Path) -> Iterator:
    """`safe_open` for reading headers (numpy: no tensor is loaded), naming the file and the fix when it is
    truncated or corrupt."""
    try:
        with safe_open(path, framework="numpy") as weights:
            yield weights
    except SafetensorError as error:
        raise DamagedCheckpointError(_unreadable_message([path], error)) from None


def _files_holding(name_or_path, subfolder: str | None, keys=(), prefix: str = "") -> str:
    """The local weight files (of a sharded checkpoint: the shards meant to hold `keys`), or the repo id."""
    folder = Path(name_or_path, subfolder or "")
    if not folder.is_dir():
        return f"The checkpoint {name_or_path}"
    index = next(iter(sorted(folder.glob("*.safetensors.index.json"))), None)
    if index is None:
        files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
        return ", ".join(map(str, files)) or str(folder)
    weight_map = json.loads(index.read_text()).get("weight_map", {})
    shards = {weight_map.get(key) or weight_map.get(f"{prefix}.{key}") for key in keys} - {None}
    return ", ".join(str(folder / shard) for shard in sorted(shards)) or str(index)


def _unreadable(path: Path) -> bool:
    try:
        with safe_open(path, framework="numpy"):
            return False
    except SafetensorError:
        return True


def unreadable_weights_message(name_or_path, subfolder: str | None, error: SafetensorError) -> str:
    folder = Path(name_or_path or "", subfolder or "")
    if not name_or_path or not folder.is_dir():
        return (
            f"The weights of {name_or_path} are truncated or corrupt (SafetensorError: {error}): download them "
            "again with from_pretrained(..., force_download=True)."
        )
    broken = [path for path in sorted(folder.glob("*.safetensors")) if _unreadable(path)] or [folder]
    return _unreadable_message(broken, error)


def _unreadable_message(paths: list, error: SafetensorError) -> str:
    return f"{', '.join(map(str, paths))} is truncated or corrupt (SafetensorError: {error}): {DAMAGED_WEIGHTS_FIX}."


def missing_weights_message(
    model, name_or_path, subfolder: str | None, missing: list, unexpected, on_purpose: str = ""
) -> str:
    where = _files_holding(name_or_path, subfolder, missing, model.base_model_prefix)
    unused = f"; it holds {_listed(sorted(unexpected))} instead, which nothing reads" if unexpected else ""
    on_purpose = f" ({on_purpose} initialises them at random on purpose)" if on_purpose else ""
    return (
        f"{where} lacks weights that {type(model).__name__} expects: {_listed(missing)}{unused}. Loading would fill "
        f"them at random: the checkpoint is damaged or belongs to another model; {DAMAGED_WEIGHTS_FIX}{on_purpose}."
    )


def _listed(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
