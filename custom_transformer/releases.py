"""The code files every custom_transformer release ships inside checkpoints, by SHA-256: what `verify` compares to.

`released_code.json` lists, oldest first, every state of the shipped files that carried a `CODE_VERSION`, with the
commit and date it was recorded from. The last state of a version is its release; earlier states of the same version
(main between two version bumps, before this manifest existed) are development states: still recognised, since
checkpoints were saved with them. `released_code.tar.xz` holds each recorded file's content once, named by its
SHA-256, so that an edited file is shown as a diff against the released one.

The history only grows: tests/test_releases.py fails when the shipped files change without a new `CODE_VERSION`
recorded here (`python tests/helpers/record_release.py`). Nothing in this module imports or runs a checkpoint's code.
"""

import hashlib
import json
import tarfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.version import InvalidVersion, Version

MANIFEST = Path(__file__).with_name("released_code.json")
CONTENTS = Path(__file__).with_name("released_code.tar.xz")


@dataclass(frozen=True)
class CodeState:
    """One recorded state of the shipped code files: `files` maps each file name to its SHA-256."""

    version: str
    date: str
    commit: str | None
    files: dict[str, str]
    is_release: bool
    installed: bool = False  # the installed package's code, not recorded (a checkout between two releases)

    @property
    def label(self) -> str:
        if self.installed:
            return f"the installed custom_transformer's code ({self.version}, not a recorded release)"
        if self.is_release:
            return f"release {self.version} ({self.date})"
        return f"{self.version} as of commit {self.commit[:12]} ({self.date}), a development state before the release"


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@cache
def code_states() -> tuple[CodeState, ...]:
    """Every recorded state, oldest first."""
    entries = json.loads(MANIFEST.read_text(encoding="utf-8"))["states"]
    last_of_version = {entry["version"]: index for index, entry in enumerate(entries)}
    return tuple(
        CodeState(
            entry["version"], entry["date"], entry["commit"], entry["files"], last_of_version[entry["version"]] == i
        )
        for i, entry in enumerate(entries)
    )


def states_of(version: str) -> list[CodeState]:
    return [state for state in code_states() if state.version == version]


def known_versions() -> list[str]:
    return list(dict.fromkeys(state.version for state in code_states()))


def placement(version: str | None) -> str:
    """Where an unrecorded version stands: "older" (or none: saved before the manifest), "newer", or "unknown"."""
    if not version:
        return "older"
    try:
        parsed, known = Version(str(version)), [Version(v) for v in known_versions()]
    except InvalidVersion:
        return "unknown"
    return "older" if parsed < min(known) else "newer" if parsed > max(known) else "unknown"


@cache
def _contents() -> dict[str, bytes]:
    with tarfile.open(CONTENTS, "r:xz") as archive:
        return {member.name: archive.extractfile(member).read() for member in archive if member.isfile()}


def released_file(digest: str) -> bytes:
    """The content of a recorded file, by its SHA-256."""
    return _contents()[digest]
