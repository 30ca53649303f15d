"""What a hub-ready checkpoint folder must hold, and nothing else; checked before anything is uploaded.

A complete folder loads with `from_pretrained(..., trust_remote_code=True)` on a machine without our
package: config.json with an `auto_map` whose modules are present and verify as a release's code, safetensors weights (one file, or an
index and every shard it names), tokenizer files, and a README.md card with evaluation results. Training
state (optimizer, scheduler, `training_args.bin`, checkpoints) and paths of this machine must not be in it.
"""

import json
import os
import re
import sys
import tempfile
from fnmatch import fnmatch
from pathlib import Path

from huggingface_hub import ModelCard, constants

from custom_transformer.checkpoint_io import SAFE_WEIGHTS, SAFE_WEIGHTS_INDEX, open_weights, weight_files
from custom_transformer.verify import VerifyError, judge, read_folder
from training.tasks import PROCESSORS, Processor

from .card import CARD_FILENAME

HUB_FILES = (
    "config.json",
    "generation_config.json",
    "*.py",
    SAFE_WEIGHTS,
    SAFE_WEIGHTS_INDEX,
    "model-*-of-*.safetensors",
    *dict.fromkeys(pattern for processor in PROCESSORS.values() for pattern in processor.files),
    CARD_FILENAME,
    "*.png",
)


class IncompleteCheckpointError(ValueError):
    """The folder is not a complete, clean hub checkpoint; the message lists every problem."""


def check_checkpoint(
    folder: str | Path, local_paths: tuple[str | Path, ...] = (), processor: Processor | None = None
) -> list[str]:
    """Return the folder's files (relative, sorted), or raise listing everything that is wrong with it.

    `local_paths`: extra paths of this machine that must not appear in any file (the folder itself, the
    home, working, temp and cache directories and the Python prefix are always checked). `processor`: the one
    the model's task needs (a tokenizer, an image processor, ...); without it, any known processor will do. A
    truncated or corrupt weights file raises `DamagedCheckpointError` at once: nothing else about the folder matters then.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IncompleteCheckpointError(f"{folder} is not a folder.")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    problems = [
        f"{name} is not part of a hub checkpoint (training state or stray file): remove it."
        for name in files
        if not any(fnmatch(name, pattern) for pattern in HUB_FILES)
    ]
    problems += _config_problems(folder)
    problems += _code_problems(folder)
    problems += _weights_problems(folder)
    problems += _processor_problems(folder, processor)
    problems += _card_problems(folder)
    problems += [
        f"{name} contains the local path {path}: a checkpoint must not depend on this machine."
        for name, path in find_local_paths(folder, files, (folder, *local_paths))
    ]
    if problems:
        raise IncompleteCheckpointError(f"{folder} is not a complete hub checkpoint:\n- " + "\n- ".join(problems))
    return files


def _processor_problems(folder: Path, processor: Processor | None) -> list[str]:
    wanted = [processor] if processor else list(PROCESSORS.values())
    if any((folder / kind.config_file).is_file() for kind in wanted):
        return []
    files = " or ".join(dict.fromkeys(kind.config_file for kind in wanted))
    nouns = " or ".join(dict.fromkeys(kind.noun for kind in wanted))
    return [f"{files} is missing: save the {nouns} with the model."]


def _config_problems(folder: Path) -> list[str]:
    path = folder / "config.json"
    if not path.is_file():
        return ["config.json is missing."]
    try:
        auto_map = json.loads(path.read_text()).get("auto_map") or {}
    except json.JSONDecodeError as error:
        return [f"config.json is not valid JSON: {error}."]
    if "AutoConfig" not in auto_map:
        return ["config.json has no auto_map['AutoConfig']: the checkpoint would not load with trust_remote_code."]
    problems = []
    for module in sorted({reference.split(".")[0] for reference in auto_map.values()}):
        if not (folder / f"{module}.py").is_file():
            problems.append(f"{module}.py (named in config.json auto_map) is missing: the model code must ship.")
    for code in sorted(folder.glob("*.py")):
        if re.search(r"^\s*(from|import)\s+custom_transformer\b", code.read_text(), re.MULTILINE):
            problems.append(f"{code.name} imports the custom_transformer package: remote code must import relatively.")
    return problems


def _code_problems(folder: Path) -> list[str]:
    """The code must be exactly a release's (or the installed package's): a hand-edited copy is never published."""
    try:
        report = judge(read_folder(folder))
    except VerifyError:  # config.json missing, unreadable or not ours: _config_problems says so
        return []
    if report.verified:
        return []
    return [
        f"{report.summary} {' '.join(report.problems)} (python -m custom_transformer.verify {folder} shows the diff)"
    ]


def _weights_problems(folder: Path) -> list[str]:
    if (folder / SAFE_WEIGHTS_INDEX).is_file():
        return [
            f"Shard {shard.name} (named in {SAFE_WEIGHTS_INDEX}) is missing."
            for shard in weight_files(folder)
            if not shard.is_file()
        ]
    if not (folder / SAFE_WEIGHTS).is_file():
        return [f"{SAFE_WEIGHTS} (or {SAFE_WEIGHTS_INDEX} and its shards) is missing: the checkpoint has no weights."]
    return []


def _card_problems(folder: Path) -> list[str]:
    path = folder / CARD_FILENAME
    if not path.is_file():
        return [f"{CARD_FILENAME} (the model card) is missing: write it with `python -m model_cards`."]
    try:
        card = ModelCard.load(path)
    except Exception as error:  # YAML errors, invalid model-index: all mean the same to the user
        return [f"{CARD_FILENAME} front matter does not parse: {error}"]
    if not card.data.eval_results:
        return [f"{CARD_FILENAME} has no evaluation results (model-index): a card without results is refused."]
    return []


def machine_paths() -> set[str]:
    """Directories that identify this machine or user, as they would appear inside a file."""
    candidates = {Path.home(), Path.cwd(), Path(sys.prefix), Path(tempfile.gettempdir()), Path(constants.HF_HOME)}
    return {str(p) for p in candidates if len(p.parts) > 1}


def find_local_paths(folder: Path, files: list[str], extra: tuple[str | Path, ...] = ()) -> list[tuple[str, str]]:
    """(file, path) for every machine path found in a file; safetensors in their metadata and tensor names only."""
    paths = machine_paths() | {str(Path(p).absolute()) for p in extra} | {str(Path(p).resolve()) for p in extra}
    # A path followed by a name character is another path (/work vs /workspace).
    pattern = re.compile(
        b"|".join(re.escape(os.fsencode(p)) + rb"(?![\w.-])" for p in sorted(paths, key=len, reverse=True))
    )
    found = []
    for name in files:
        data = _safetensors_header(folder / name) if name.endswith(".safetensors") else (folder / name).read_bytes()
        found += sorted({(name, os.fsdecode(m.group())) for m in pattern.finditer(data)})
    return found


def _safetensors_header(path: Path) -> bytes:
    """The text a safetensors file carries, where a machine path could hide: its metadata and tensor names."""
    with open_weights(path) as weights:
        metadata = weights.metadata() or {}
        return "\n".join([*weights.keys(), *metadata.keys(), *metadata.values()]).encode()
