"""Record the shipped code of a new CODE_VERSION in custom_transformer/released_code.{json,tar.xz}.

    .venv/bin/python tests/helpers/record_release.py                 # after bumping CODE_VERSION
    .venv/bin/python tests/helpers/record_release.py --from-git      # rebuild the history from git (first parent)

A release is recorded once: a version that already has a state is refused (bump CODE_VERSION instead), so a
verified checkpoint always names exactly one content per file. `--from-git` walks main's first-parent history and
records every state of the shipped files that carried a CODE_VERSION, the commit that introduced it and its date;
the last state must be the installed code. tests/test_releases.py checks the result.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_import_files

from custom_transformer import releases
from custom_transformer.configuration_custom_transformer import CODE_VERSION
from custom_transformer.refresh import code_files

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "custom_transformer"
ENTRY_MODULES = ("configuration_custom_transformer.py", "modeling_custom_transformer.py")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout


def shipped_files_at(revision: str) -> tuple[str | None, dict[str, bytes]]:
    """CODE_VERSION and the shipped code files at a git revision, derived as `save_pretrained` derives them."""
    names = [Path(path).name for path in git("ls-tree", "--name-only", f"{revision}:{PACKAGE}").split()]
    if not all(entry in names for entry in ENTRY_MODULES):
        return None, {}
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            if name.endswith(".py"):
                content = subprocess.run(
                    ["git", "show", f"{revision}:{PACKAGE}/{name}"], cwd=REPO_ROOT, check=True, capture_output=True
                ).stdout
                Path(folder, name).write_bytes(content)
        files = {}
        for entry in ENTRY_MODULES:
            for path in (Path(folder, entry), *map(Path, get_relative_import_files(str(Path(folder, entry))))):
                files[path.name] = path.read_bytes()
        configuration = files["configuration_custom_transformer.py"].decode()
    stamp = [line for line in configuration.splitlines() if line.startswith("CODE_VERSION = ")]
    return (stamp[0].split("=", 1)[1].strip().strip("\"'") if stamp else None), dict(sorted(files.items()))


def history_from_git() -> tuple[list[dict], dict[str, bytes]]:
    states, contents = [], {}
    for revision in git("rev-list", "--reverse", "--first-parent", "HEAD").split():
        version, files = shipped_files_at(revision)
        digests = {name: releases.sha256(content) for name, content in files.items()}
        if version is None or (states and states[-1]["files"] == digests and states[-1]["version"] == version):
            continue
        date = git("show", "-s", "--format=%cs", revision).strip()
        states.append({"version": version, "date": date, "commit": revision, "files": digests})
        contents.update({releases.sha256(content): content for content in files.values()})
    return states, contents


def write(states: list[dict], contents: dict[str, bytes]) -> None:
    releases.MANIFEST.write_text(json.dumps({"states": states}, indent=2) + "\n", encoding="utf-8")
    with tarfile.open(releases.CONTENTS, "w:xz", preset=9) as archive:
        for digest, content in sorted(contents.items()):
            member = tarfile.TarInfo(digest)
            member.size, member.mtime, member.mode = len(content), 0, 0o644
            archive.addfile(member, io.BytesIO(content))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-git", action="store_true", help="rebuild the whole history from git")
    args = parser.parse_args(argv)
    installed = code_files()
    installed_digests = {name: releases.sha256(content) for name, content in installed.items()}
    if args.from_git:
        states, contents = history_from_git()
        if states[-1]["version"] != CODE_VERSION or states[-1]["files"] != installed_digests:
            sys.exit("the installed code is not the last committed state: commit it first, then rebuild.")
    else:
        states = json.loads(releases.MANIFEST.read_text(encoding="utf-8"))["states"]
        contents = {
            state_digest: releases.released_file(state_digest) for s in states for state_digest in s["files"].values()
        }
        if any(state["version"] == CODE_VERSION for state in states):
            sys.exit(
                f"CODE_VERSION {CODE_VERSION} is already recorded: bump it in "
                "custom_transformer/configuration_custom_transformer.py, then record the new release."
            )
        today = datetime.date.today().isoformat()
        states.append({"version": CODE_VERSION, "date": today, "commit": None, "files": installed_digests})
        contents.update({releases.sha256(content): content for content in installed.values()})
    write(states, contents)
    print(f"{len(states)} states, {len(contents)} files; last: {states[-1]['version']} ({states[-1]['date']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
