"""Check, before `trust_remote_code=True` runs it, that the code a checkpoint carries is a custom_transformer release.

    python -m custom_transformer.verify ./my-checkpoint
    python -m custom_transformer.verify org/name [--revision BRANCH_OR_COMMIT]

Reads config.json, the processor configs that can name code (their `auto_map`) and the checkpoint's Python files as
bytes (never importing, parsing or running them) and compares them with the files each release shipped, recorded in
this package by SHA-256 (`releases`). A Hub repo is read through huggingface_hub at one commit, which the report
names: load that commit (`revision=`) and you load what was verified. One verdict, one exit code a script can
branch on:

    0  verified: exactly the code of a release (or of the installed package)
    2  not a checkpoint this command can read (the message says why)
    3  a shipped file differs from the release's, or is missing (shown as a unified diff)
    4  extra Python files that the release does not ship
    5  auto_map or custom_pipelines name code other than the release's classes
    6  a code_version newer than this package knows: upgrade custom_transformer
    7  older than the recorded releases (or no code_version): refresh the checkpoint
    8  a code_version no release ever had
"""

import argparse
import ast
import difflib
import json
import sys
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from pathlib import Path, PurePosixPath

from . import releases
from .configuration_custom_transformer import CODE_VERSION, CustomTransformerConfig
from .hub_repo import CONFIG_NAME, HubRepoError, open_repo

# Besides config.json, the files whose `auto_map` tells transformers which code to import.
CODE_NAMING_CONFIGS = (
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
)
DIFF_LINES = 200


class Verdict(IntEnum):
    VERIFIED = 0
    UNREADABLE = 2
    FILE_DIFFERS = 3
    EXTRA_CODE = 4
    NAMES_OTHER_CODE = 5
    NEWER_VERSION = 6
    OLDER_VERSION = 7
    UNKNOWN_VERSION = 8


class VerifyError(ValueError):
    """The target cannot be read as a custom_transformer checkpoint (exit code 2); the message says why."""


@dataclass
class Checkpoint:
    """What verification reads: never more than configs and the code files' bytes."""

    where: str
    config: dict
    code: dict[str, bytes]  # every Python file, by its path inside the checkpoint
    code_configs: dict[str, dict] = field(default_factory=dict)  # CODE_NAMING_CONFIGS present, parsed
    commit: str | None = None  # a Hub repo: the commit that was read


@dataclass
class Report:
    where: str
    verdict: Verdict
    summary: str
    problems: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    state: releases.CodeState | None = None
    commit: str | None = None

    @property
    def verified(self) -> bool:
        return self.verdict is Verdict.VERIFIED

    def text(self) -> str:
        lines = [self.summary, *(f"- {problem}" for problem in self.problems)]
        if self.commit:
            lines.append(f"read at commit {self.commit}: load it with revision={self.commit!r}")
        return "\n".join([*lines, *self.diffs])


# -- the verdict -------------------------------------------------------------------------------------------------


def judge(checkpoint: Checkpoint) -> Report:
    """The verdict on what `checkpoint` holds; nothing in it is imported or executed."""
    where, config = checkpoint.where, checkpoint.config
    if config.get("model_type") != CustomTransformerConfig.model_type:
        raise VerifyError(
            f"{where}/{CONFIG_NAME} has model_type {config.get('model_type')!r}, not "
            f"{CustomTransformerConfig.model_type!r}: verify only knows custom_transformer's code."
        )
    version = config.get("code_version")
    digests = {name: releases.sha256(content) for name, content in checkpoint.code.items()}
    candidates = [*releases.states_of(version), *installed_state(version)] if version else []
    if not version:  # saved before code_version existed, or the key was removed: the files may still say
        candidates = [state for state in releases.code_states() if state.files == digests]
    if not candidates:
        return unknown_version_report(checkpoint, version)
    state = min(reversed(candidates), key=lambda candidate: len(differences(candidate, digests)))
    report = Report(where, Verdict.VERIFIED, "", state=state, commit=checkpoint.commit)
    for name in sorted(set(state.files) - set(digests)):
        report.problems.append(f"{name} is missing: {state.version} ships it.")
    for name in sorted(set(state.files) & set(digests)):
        if digests[name] != state.files[name]:
            report.problems.append(f"{name} differs from {state.version}'s file (diff below).")
            report.diffs.append(diff(state, name, checkpoint.code[name], where))
    for name in sorted(set(digests) - set(state.files)):
        shipped_before = any(name in other.files for other in releases.code_states())
        why = "an older release shipped it: refresh removes it" if shipped_before else "no release ships it"
        report.problems.append(f"{name} is not part of {state.version}'s code ({why}).")
    report.problems += reference_problems(checkpoint, state)
    report.verdict = verdict_of(state, digests, report.problems)
    report.summary = summary(checkpoint, state, report.verdict)
    return report


def differences(state: releases.CodeState, digests: dict[str, str]) -> set[str]:
    return {name for name in set(state.files) | set(digests) if state.files.get(name) != digests.get(name)}


def verdict_of(state: releases.CodeState, digests: dict[str, str], problems: list[str]) -> Verdict:
    if any(state.files.get(name) != digests.get(name) for name in state.files):
        return Verdict.FILE_DIFFERS
    if set(digests) - set(state.files):
        return Verdict.EXTRA_CODE
    return Verdict.NAMES_OTHER_CODE if problems else Verdict.VERIFIED


def summary(checkpoint: Checkpoint, state: releases.CodeState, verdict: Verdict) -> str:
    where = checkpoint.where
    if verdict is Verdict.VERIFIED:
        note = "" if checkpoint.config.get("code_version") else f" ({CONFIG_NAME} has no code_version)"
        return f"verified: the code in {where} is exactly {state.label}{note}."
    return {
        Verdict.FILE_DIFFERS: f"NOT verified: code in {where} differs from {state.label}; do not load it with "
        f"trust_remote_code=True (python -m custom_transformer.refresh {where} restores released code).",
        Verdict.EXTRA_CODE: f"NOT verified: {where} carries Python files beside the code of {state.label}; a checkpoint "
        "needs none: remove them before loading it with trust_remote_code=True.",
        Verdict.NAMES_OTHER_CODE: f"NOT verified: the files in {where} are {state.label}, but its configs name other "
        f"code to run; python -m custom_transformer.refresh {where} rewrites auto_map.",
    }[verdict]


def unknown_version_report(checkpoint: Checkpoint, version: str | None) -> Report:
    where, versions = checkpoint.where, releases.known_versions()
    known = f"the releases this package records ({versions[0]} to {versions[-1]})"
    placement = releases.placement(version)
    if placement == "newer":
        verdict = Verdict.NEWER_VERSION
        summary = f"unknown: {where} carries custom_transformer code {version}, newer than {known}, installed {CODE_VERSION}: upgrade custom_transformer and verify again."
    elif placement == "older":
        verdict = Verdict.OLDER_VERSION
        saved = f"code {version}" if version else f"code saved before {versions[0]} (no code_version)"
        summary = f"unknown: {where} carries {saved}, older than {known}: python -m custom_transformer.refresh {where} replaces it with the installed release's code, then verify again."
    else:
        verdict = Verdict.UNKNOWN_VERSION
        summary = f"unknown: {where} says code_version {version!r}, which no custom_transformer release had ({known}): treat its code as unverified."
    return Report(where, verdict, summary, commit=checkpoint.commit)


# -- what the configs name ---------------------------------------------------------------------------------------


def reference_problems(checkpoint: Checkpoint, state: releases.CodeState) -> list[str]:
    """Every `auto_map` / `custom_pipelines` entry that does not name a class the release's own modules define."""
    named = [(CONFIG_NAME, checkpoint.config), *checkpoint.code_configs.items()]
    problems = []
    for file, config in named:
        for key, references in (config.get("auto_map") or {}).items():
            for reference in references if isinstance(references, list | tuple) else [references]:
                if reference is not None and (problem := reference_problem(reference, state)):
                    problems.append(f"{file} auto_map {key} = {reference!r}: {problem}.")
    for task, entry in (checkpoint.config.get("custom_pipelines") or {}).items():
        reference = entry.get("impl") if isinstance(entry, dict) else entry
        if problem := reference_problem(reference, state):
            problems.append(f"{CONFIG_NAME} custom_pipelines {task} = {reference!r}: {problem}.")
    return problems


def reference_problem(reference, state: releases.CodeState) -> str | None:
    if not isinstance(reference, str) or "." not in reference:
        return "not a module.Class reference"
    if "--" in reference:
        return "code from another repo, which a release never names"
    module, _, name = reference.rpartition(".")
    file = f"{module.replace('.', '/')}.py"
    if file not in state.files:
        return f"{file} is not one of {state.version}'s files"
    if name not in classes_defined(state.files[file]):
        return f"{state.version}'s {file} defines no class {name}"
    return None


@cache
def classes_defined(digest: str) -> frozenset[str]:
    """Top-level classes of a recorded file: our own released source, never the checkpoint's copy."""
    return frozenset(node.name for node in ast.parse(content_of(digest)).body if isinstance(node, ast.ClassDef))


def content_of(digest: str) -> bytes:
    installed = {releases.sha256(content): content for content in installed_code().values()}
    return installed[digest] if digest in installed else releases.released_file(digest)


def diff(state: releases.CodeState, name: str, found: bytes, where: str) -> str:
    released = content_of(state.files[name]).decode("utf-8", "replace").splitlines(keepends=True)
    lines = list(
        difflib.unified_diff(
            released,
            found.decode("utf-8", "replace").splitlines(keepends=True),
            fromfile=f"custom_transformer {state.version}/{name}",
            tofile=f"{where}/{name}",
        )
    )
    more = [f"... {len(lines) - DIFF_LINES} more diff lines\n"] if len(lines) > DIFF_LINES else []
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines[:DIFF_LINES] + more).rstrip("\n")


# -- the installed code ------------------------------------------------------------------------------------------


@cache
def installed_code() -> dict[str, bytes]:
    from .refresh import code_files

    return code_files()


def installed_state(version: str) -> list[releases.CodeState]:
    """The installed package's code, when it is a version not recorded yet (a checkout between two releases): it is
    what this package runs anyway, so a checkpoint carrying exactly it is verified, and says so."""
    digests = {name: releases.sha256(content) for name, content in installed_code().items()}
    if version != CODE_VERSION or any(state.files == digests for state in releases.states_of(version)):
        return []
    return [releases.CodeState(CODE_VERSION, "unreleased", None, digests, False, installed=True)]


# -- reading a checkpoint ----------------------------------------------------------------------------------------


def read_folder(folder: str | Path, *, nested: bool = True) -> Checkpoint:
    """A local checkpoint. `nested=False` reads only the top level's code: a training run's folder, whose
    checkpoint-N/ subfolders carry copies of the same code."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VerifyError(f"{folder} is not a folder: pass the checkpoint folder that save_pretrained wrote.")
    if not (folder / CONFIG_NAME).is_file():
        raise VerifyError(f"{folder} has no {CONFIG_NAME}, so it is not a saved checkpoint.")
    code = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*.py") if nested else folder.glob("*.py"))
        if path.is_file() and ".cache" not in path.relative_to(folder).parts
    }
    configs = {name: (folder / name).read_bytes() for name in CODE_NAMING_CONFIGS if (folder / name).is_file()}
    return Checkpoint(
        str(folder),
        parse(str(folder), CONFIG_NAME, (folder / CONFIG_NAME).read_bytes()),
        code,
        {name: parse(str(folder), name, content) for name, content in configs.items()},
    )


def read_repo(repo_id: str, revision: str | None = None) -> Checkpoint:
    """A Hub repo at one commit: only config.json, the processor configs that can name code and the .py files."""
    repo = open_repo(repo_id, revision, verb="verify")
    code = {path: repo.read(path) for path in sorted(repo.files) if PurePosixPath(path).suffix == ".py"}
    configs = {name: repo.read(name) for name in CODE_NAMING_CONFIGS if name in repo.files}
    return Checkpoint(
        repo.where,
        parse(repo.where, CONFIG_NAME, repo.read(CONFIG_NAME)),
        code,
        {name: parse(repo.where, name, content) for name, content in configs.items()},
        repo.commit,
    )


def parse(where: str, name: str, content: bytes) -> dict:
    try:
        parsed = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VerifyError(
            f"{where}/{name} is not valid JSON ({error}): restore it from the original checkpoint."
        ) from None
    if not isinstance(parsed, dict):
        raise VerifyError(f"{where}/{name} is not a JSON object: restore it from the original checkpoint.")
    return parsed


def verify(target: str | Path, revision: str | None = None) -> Report:
    """The verdict on a local checkpoint folder, or on a Hub repo id at `revision` (default: main)."""
    if Path(target).exists():
        if revision:
            raise VerifyError("--revision applies to Hub repos, not to a local folder.")
        return judge(read_folder(target))
    try:
        return judge(read_repo(str(target), revision))
    except HubRepoError as error:
        raise VerifyError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m custom_transformer.verify",
        description="Say whether the code a custom_transformer checkpoint carries is exactly a release's, without "
        "running it.",
        epilog=__doc__[__doc__.index("    0  verified") :],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="PATH_OR_REPO_ID", help="a checkpoint folder, or a Hub repo id (org/name)")
    parser.add_argument("--revision", help="Hub repos only: the branch or commit to read (default: main)")
    args = parser.parse_args(argv)
    try:
        report = verify(args.target, args.revision)
    except VerifyError as error:
        print(f"verify: error: {error}", file=sys.stderr)
        return Verdict.UNREADABLE
    except OSError as error:
        print(f"verify: error: cannot read {args.target} ({error}).", file=sys.stderr)
        return Verdict.UNREADABLE
    print(report.text())
    return report.verdict


if __name__ == "__main__":
    sys.exit(main())
