"""`run_info.json`: what a training run was, as one validated type written by the scripts and read by `model_cards`.

A `RunRecord` is written once, at the end of `training.pretrain` / `training.finetune`, next to the model it
describes; a model card states nothing that is not in it (or in the Trainer's own files). Reading checks the
file against this schema and lists every problem at once, so a card is never built from half a record.
Paths are stored relative (to the current directory, or as a bare name), never as absolute paths of the
machine that trained. Needs neither torch nor `datasets`: `model_cards` reads records without them.
"""

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .tasks import TASKS

RUN_INFO = "run_info.json"
REQUIRED = ("task", "preset", "dataset", "metrics")


class InvalidRunRecord(ValueError):
    """run_info.json is missing, unreadable or does not follow the schema; the message lists every problem."""


@dataclass
class DatasetRecord:
    name: str
    license: str
    source: str = "local files"
    files: list[str] = field(default_factory=list)  # relative paths
    split_sizes: dict[str, int] = field(default_factory=dict)  # rows per split, after cleaning
    labels: list[str] | None = None  # classification: the label names, in id order
    pretty_name: str | None = None
    language: str | list[str] | None = None


@dataclass
class RunRecord:
    task: str  # a pipeline tag: a key of training.tasks.TASKS
    preset: str  # the architecture preset, or "custom"
    dataset: DatasetRecord
    metrics: dict[str, float]  # measured on `evaluated_split`, without the "test_"/"eval_" prefix
    evaluated_split: str = "test"  # "validation" when the run had no test split
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # same split, same metric modules
    base_model: str | None = None  # what fine-tuning started from (a relative folder or a Hub id)
    base_model_is_local: bool | None = None  # a folder of the training machine: never named as a Hub base model
    wall_time_seconds: float | None = None
    hardware: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    model_name: str | None = None
    license: str | None = None  # the model's licence when it differs from the data's

    def problems(self) -> list[str]:
        """Everything that keeps this record from describing a run truthfully."""
        problems = []
        if self.task not in TASKS:
            problems.append(f"'task' is {self.task!r}; expected one of {', '.join(TASKS)}.")
        if not isinstance(self.preset, str) or not self.preset:
            problems.append("'preset' (the architecture preset name) is missing.")
        if not self.dataset.name or not self.dataset.license:
            problems.append("'dataset' needs at least a 'name' and a 'license'.")
        numbers = {k: v for k, v in self.metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if not numbers:
            problems.append(
                "'metrics' is empty (no test metrics): a model card without evaluation results is refused. "
                "Evaluate the model (--do_eval / --do_predict) and record the numbers first."
            )
        return problems

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        """Validate `data` (a parsed run_info.json); unknown keys are ignored, missing or wrong ones listed."""
        if not isinstance(data, dict):
            raise InvalidRunRecord(f"{RUN_INFO} must hold a JSON object, not {type(data).__name__}.")
        problems = [f"'{name}' is missing." for name in REQUIRED if name not in data]
        if "dataset" in data and not isinstance(data["dataset"], dict):
            problems.append("'dataset' must be an object with at least a 'name' and a 'license'.")
        if "metrics" in data and not isinstance(data["metrics"], dict):
            problems.append("'metrics' must be an object of metric name -> number.")
        if problems:
            raise InvalidRunRecord(f"{RUN_INFO} does not follow the schema:\n- " + "\n- ".join(problems))
        dataset = data["dataset"]
        known = {f.name for f in fields(DatasetRecord)}
        record = cls(
            **{f.name: data[f.name] for f in fields(cls) if f.name in data and f.name != "dataset"},
            dataset=DatasetRecord(**{"name": "", "license": "", **{k: v for k, v in dataset.items() if k in known}}),
        )
        problems = record.problems()
        if problems:
            raise InvalidRunRecord(f"{RUN_INFO} does not describe a complete run:\n- " + "\n- ".join(problems))
        return record

    def to_dict(self) -> dict:
        """The JSON form; optional fields left unset are omitted, so "unknown" stays distinguishable from a value."""
        data = asdict(self)
        data["dataset"] = {k: v for k, v in data["dataset"].items() if v is not None}
        return {k: v for k, v in data.items() if v is not None}

    def write(self, output_dir: str | os.PathLike) -> Path:
        """Write atomically: a reader (or a crash) never sees half a file."""
        problems = self.problems()
        if problems:
            raise InvalidRunRecord("Refusing to write an incomplete run record:\n- " + "\n- ".join(problems))
        path = Path(output_dir) / RUN_INFO
        partial = path.with_name(f".{RUN_INFO}.partial")
        partial.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
        return path

    @classmethod
    def read(cls, output_dir: str | os.PathLike) -> "RunRecord":
        path = Path(output_dir) / RUN_INFO
        if not path.is_file():
            raise InvalidRunRecord(f"{path} is missing (written by the training script at the end of a run).")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidRunRecord(f"{path} is not valid JSON: {error}.") from error
        return cls.from_dict(data)


def portable_path(path: str | os.PathLike | None) -> str | None:
    """`path` relative to the current directory when it lies under it, else its last component."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_absolute():
        return path.as_posix()
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name
