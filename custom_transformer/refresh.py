"""Refresh the model code inside a saved custom_transformer checkpoint; the weights are not touched.

    python -m custom_transformer.refresh ./my-checkpoint                 # a local folder, in place
    python -m custom_transformer.refresh org/name [--revision BRANCH]    # a Hub repo: one commit
    python -m custom_transformer.refresh ... --dry-run                   # print what would change, change nothing

A checkpoint carries the code of the release that saved it (`trust_remote_code=True` runs that code), so a
fix to the model code reaches a published checkpoint only when its code files are replaced. Refreshing writes
the installed package's code files (the files `save_pretrained` would copy: the configuration and modeling
modules and everything they import relatively), removes code files an older release shipped that the
installed one no longer does, and rewrites config.json with every key kept except two that describe the code:
`auto_map` (recomputed for the config) and `code_version` (the installed code's version). Nothing else in the
checkpoint is read or written, so weights, tokenizer and model card stay byte-identical.

A local folder is updated in place, one file at a time, each write atomic (temporary file in the same folder,
fsync, rename) and config.json last: a run killed at any point leaves every file whole, and running the
command again finishes the job. A Hub repo is updated with one commit (`HfApi.create_commit`, on top of the
commit that was read, so a concurrent push is refused rather than overwritten); the endpoint and token come
from HF_ENDPOINT and HF_TOKEN (or the saved login). Both are idempotent: a refreshed checkpoint is left alone.
Bad input is refused with a one-line error and exit code 2.
"""

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging import version
from transformers.dynamic_module_utils import get_relative_import_files

from . import modeling_custom_transformer as modeling
from .checkpoint_io import fsync_directory
from .configuration_custom_transformer import CODE_VERSION, CustomTransformerConfig
from .hub_repo import HubRepoError, open_repo, transport_errors

CONFIG_NAME = "config.json"
MODEL_TYPE = CustomTransformerConfig.model_type
# Config keys that describe the code rather than the model: the only keys a refresh rewrites.
CODE_KEYS = ("auto_map", "code_version", "custom_pipelines")
# Every code file name a release of this package has shipped inside checkpoints. A file with one of these names
# that the installed code no longer ships is stale and removed; files with any other name are never touched.
# Add a name here when the package starts shipping a new file (tests/test_refresh.py and test_releases.py check this).
SHIPPED_CODE_FILES = (
    "atomic_save.py",
    "checkpoint_io.py",
    "configuration_custom_transformer.py",
    "modeling_custom_transformer.py",
    "pipeline_custom_transformer.py",
    "presets.py",
    "transformers_compat.py",
)
UNKNOWN_VERSION = "unknown (saved before 0.2.0)"
TEMP_SUFFIX = ".refresh-tmp"


class RefreshError(ValueError):
    """The target is not a custom_transformer checkpoint this command can refresh; the message says why."""


def code_files() -> dict[str, bytes]:
    """The installed code files a checkpoint ships, by file name: what `save_pretrained` copies into it.

    Derived as transformers derives it (`custom_object_save`): the module of the config class and of the model
    classes, plus every file they import relatively, recursively.
    """
    files = {}
    for module in (CustomTransformerConfig.__module__, modeling.__name__):
        source = sys.modules[module].__file__
        for path in (source, *get_relative_import_files(source)):
            files[Path(path).name] = Path(path).read_bytes()
    return dict(sorted(files.items()))


def version_label(version: str | None) -> str:
    return version if version else UNKNOWN_VERSION


@dataclass
class Plan:
    """What a refresh changes: files to write (config.json last), files to remove, one line per file."""

    old_version: str | None
    writes: dict[str, bytes] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.writes or self.deletes)


def plan_refresh(where: str, config: dict, existing: dict[str, str]) -> Plan:
    """Compare a checkpoint with the installed code. `existing` maps each top-level file name to its git blob id."""
    check_config(where, config)
    check_not_a_downgrade(where, config.get("code_version"))
    plan = Plan(old_version=config.get("code_version"))
    current = code_files()
    for name, content in current.items():
        if name not in existing:
            plan.writes[name] = content
            plan.lines.append(f"  added    {name}")
        elif existing[name] != git_blob_id(content):
            plan.writes[name] = content
            plan.lines.append(f"  updated  {name}")
    for name in sorted(set(SHIPPED_CODE_FILES) - set(current)):
        if name in existing:
            plan.deletes.append(name)
            plan.lines.append(f"  removed  {name} (no longer part of the code)")
    refreshed = refreshed_config(where, config)
    content = config_bytes(refreshed)
    if existing.get(CONFIG_NAME) != git_blob_id(content):
        changed = sorted(key for key in set(config) | set(refreshed) if config.get(key) != refreshed.get(key))
        plan.writes[CONFIG_NAME] = content
        plan.lines.append(f"  updated  {CONFIG_NAME} ({', '.join(changed) or 'formatting'})")
    return plan


def check_config(where: str, config) -> None:
    if not isinstance(config, dict):
        raise RefreshError(f"{where}/{CONFIG_NAME} is not a JSON object: restore it from the original checkpoint.")
    model_type = config.get("model_type")
    if model_type != MODEL_TYPE:
        raise RefreshError(
            f"{where}/{CONFIG_NAME} has model_type {model_type!r}, not {MODEL_TYPE!r}: refresh only updates "
            "custom_transformer checkpoints (python -m custom_transformer.convert turns a Llama, GPT-2 or BERT "
            "checkpoint into one)."
        )


def check_not_a_downgrade(where: str, checkpoint_version) -> None:
    """Refuse to replace newer code by older: that would bring back whatever the newer release fixed."""
    try:
        newer = version.parse(str(checkpoint_version)) > version.parse(CODE_VERSION)
    except version.InvalidVersion:
        return
    if checkpoint_version and newer:
        raise RefreshError(
            f"{where} runs custom_transformer code {checkpoint_version}, newer than the installed {CODE_VERSION}: "
            "upgrade the installed custom_transformer package instead of downgrading the checkpoint."
        )


def refreshed_config(where: str, config: dict) -> dict:
    """Every key of `config` kept as it is, except `auto_map` and `custom_pipelines` (recomputed) and `code_version`
    (the installed one)."""
    try:
        parsed = CustomTransformerConfig.from_dict(config)
    except Exception as error:  # a validation error of the installed code: the refreshed checkpoint would not load
        raise RefreshError(
            f"{where}/{CONFIG_NAME} does not load with the installed custom_transformer code {CODE_VERSION} "
            f"({type(error).__name__}: {error}); nothing was changed."
        ) from None
    refreshed = {key: value for key, value in config.items() if key not in CODE_KEYS}
    refreshed["auto_map"] = modeling.auto_map(parsed)
    if pipelines := modeling.shipped_pipelines(parsed):
        refreshed["custom_pipelines"] = pipelines
    refreshed["code_version"] = CODE_VERSION
    return refreshed


def config_bytes(config: dict) -> bytes:
    """config.json as `PreTrainedConfig.to_json_file` writes it: sorted keys, two-space indent, final newline."""
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def git_blob_id(content: bytes) -> str:
    """The git object id of a file's content: what the Hub lists as a regular file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def print_plan(target: str, plan: Plan, dry_run: bool, out=print) -> None:
    if not plan.changes:
        out(f"{target} already runs custom_transformer code {CODE_VERSION}: nothing to change.")
        return
    out(f"{target}: {'would change (dry run, nothing written)' if dry_run else 'changes'}:")
    for line in plan.lines:
        out(line)
    out(f"code version: {version_label(plan.old_version)} -> {CODE_VERSION}")


# -- local folder ------------------------------------------------------------------------------------------------


def read_config_file(folder: Path) -> dict:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise RefreshError(
            f"{folder} has no {CONFIG_NAME}, so it is not a saved checkpoint: pass the folder that save_pretrained wrote."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RefreshError(f"{path} is not valid JSON ({error}): restore it from the original checkpoint.") from None


def refresh_folder(folder: str | Path, *, dry_run: bool = False, out=print) -> Plan:
    """Refresh a local checkpoint folder in place (or only print what would change, with `dry_run`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RefreshError(f"{folder} is not a folder: pass the checkpoint folder that save_pretrained wrote.")
    config = read_config_file(folder)
    existing = {path.name: git_blob_id(path.read_bytes()) for path in folder.iterdir() if path.is_file()}
    plan = plan_refresh(str(folder), config, existing)
    print_plan(str(folder), plan, dry_run, out)
    if dry_run:
        return plan
    for leftover in folder.glob(f".*{TEMP_SUFFIX}"):  # a write of an earlier, killed run
        leftover.unlink()
    for name, content in plan.writes.items():  # code first, config.json last (insertion order)
        if name != CONFIG_NAME:
            write_atomic(folder / name, content)
    for name in plan.deletes:
        (folder / name).unlink()
        fsync_directory(folder)
    if CONFIG_NAME in plan.writes:
        write_atomic(folder / CONFIG_NAME, plan.writes[CONFIG_NAME])
    return plan


def write_atomic(path: Path, content: bytes) -> None:
    """Replace `path` by `content` so that a crash leaves either the old file or the new one, never a mix."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


# -- Hub repo ----------------------------------------------------------------------------------------------------


def refresh_repo(
    repo_id: str,
    *,
    revision: str | None = None,
    dry_run: bool = False,
    commit_message: str | None = None,
    out=print,
) -> str | None:
    """Refresh a Hub repo's branch `revision` (default: main) with one commit; return its sha (None: no commit)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        raise RefreshError(
            f"--revision {revision} is a commit: pass the branch to refresh (a commit goes on a branch)."
        )
    try:
        repo = open_repo(repo_id, revision, verb="refresh")
        config = repo.config()
    except HubRepoError as error:
        raise RefreshError(str(error)) from None
    api, sha, where = repo.api, repo.commit, repo.where
    files = {path: blob for path, blob in repo.files.items() if "/" not in path}  # code lives at the top level

    plan = plan_refresh(where, config, files)
    print_plan(where, plan, dry_run, out)
    if dry_run or not plan.changes:
        return None
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=content) for name, content in plan.writes.items()
    ]
    operations += [CommitOperationDelete(path_in_repo=name) for name in plan.deletes]
    message = commit_message or (
        f"Refresh the model code to custom_transformer {CODE_VERSION} (was {version_label(plan.old_version)})"
    )
    try:
        commit = api.create_commit(
            repo_id, operations=operations, commit_message=message, revision=revision, parent_commit=sha
        )
    except HfHubHTTPError as error:
        raise RefreshError(
            f"the Hub refused the commit to {where} ({' '.join(str(error).split())}); nothing was changed."
        ) from None
    except transport_errors() as error:
        raise RefreshError(f"the Hub at {api.endpoint} cannot be reached ({type(error).__name__}: {error}).") from None
    out(f"pushed one commit to {where}: {commit.oid}")
    out(f'load it pinned: from_pretrained("{repo_id}", trust_remote_code=True, revision="{commit.oid}")')
    return commit.oid


# -- command line ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m custom_transformer.refresh",
        description="Replace the model code inside a custom_transformer checkpoint by the installed package's code "
        f"(version {CODE_VERSION}); weights untouched.",
    )
    parser.add_argument("target", metavar="PATH_OR_REPO_ID", help="a checkpoint folder, or a Hub repo id (org/name)")
    parser.add_argument("--revision", help="Hub repos only: the branch to read and commit to (default: main)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    parser.add_argument("--commit-message", help="Hub repos only: the commit message")
    args = parser.parse_args(argv)
    try:
        target = Path(args.target)
        if target.is_dir() or target.exists():  # an existing file is refused by refresh_folder
            if args.revision or args.commit_message:
                raise RefreshError("--revision and --commit-message apply to Hub repos, not to a local folder.")
            refresh_folder(target, dry_run=args.dry_run)
        else:
            refresh_repo(args.target, revision=args.revision, dry_run=args.dry_run, commit_message=args.commit_message)
    except RefreshError as error:
        print(f"refresh: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file that cannot be read or written: permissions, a full disk
        print(
            f"refresh: error: cannot refresh {args.target} ({error}): every file in it is still whole; "
            "fix that and run the command again to finish.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
