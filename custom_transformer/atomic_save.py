"""Replace a folder in one step: a kill or a full disk leaves the old complete folder or the new one, never a mix.

Everything is written into a hidden sibling (`.NAME.saving-*`), flushed to disk, and exchanged with the target by
one `renameat2(RENAME_EXCHANGE)` (Linux 3.15+). Where that call is missing it falls back to two renames; a kill
between them leaves the old folder as `.NAME.old-*`, which the next save through here puts back first.

Files of the target that the new save does not write (a Trainer's checkpoints and results beside the model) are
carried over as hard links, so replacing a model inside a training run's folder loses none of them. Weight files
of an earlier save are not carried over: as in transformers' own clean-up, stale shards never outlive a save.

Shipped inside checkpoints with the model code (its `save_pretrained` writes through here).
"""

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

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
        _fsync_directory(target.parent)
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
        _fsync_directory(Path(root))


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
