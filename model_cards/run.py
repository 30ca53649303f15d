"""A training run's artefacts, read and checked once: everything a card says comes from here.

The layout is the training scripts' results contract: the Trainer's files (`trainer_state.json`, the
`*_results.json` metrics), the saved model (`config.json`, safetensors, code, tokenizer) and `run_info.json`
(task, preset, dataset and license, metrics and baselines measured on the same split - the test split
unless "evaluated_split" names another - wall time, hardware, hyper-parameters).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

from custom_transformer.checkpoint_io import open_weights, weight_files
from training.run_record import InvalidRunRecord, RunRecord
from training.tasks import TASKS, Task

# Bookkeeping that Trainer and the training scripts mix into metric dicts; none of it is a result.
NOT_METRICS = ("runtime", "samples_per_second", "steps_per_second", "epoch", "total_flos", "num_rows")


class IncompleteRunError(ValueError):
    """The run folder lacks an artefact the card is built from; the message lists every gap."""


@dataclass(frozen=True)
class Run:
    directory: Path
    record: RunRecord  # run_info.json, validated
    config: dict  # config.json
    trainer_state: dict  # trainer_state.json
    num_parameters: int  # counted in the safetensors headers: what is actually shipped
    weight_dtypes: tuple[str, ...]

    @property
    def info(self) -> dict:
        """run_info.json as JSON: optional fields the run did not record are absent."""
        return self.record.to_dict()

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def task_record(self) -> Task:
        """The task's row in training/tasks/: its Hub name, Auto class and card wording."""
        return TASKS[self.task]

    @property
    def dataset(self) -> dict:
        return self.info["dataset"]

    @property
    def metrics(self) -> dict[str, float]:
        return result_metrics(self.info["metrics"])

    @property
    def baselines(self) -> dict[str, dict[str, float]]:
        return {name: result_metrics(values) for name, values in (self.info.get("baselines") or {}).items()}

    @property
    def eval_split(self) -> str:
        return self.record.evaluated_split

    @property
    def eval_examples(self) -> int | None:
        return self.info["metrics"].get("num_rows") or (self.dataset.get("split_sizes") or {}).get(self.eval_split)

    @property
    def log_history(self) -> list[dict]:
        return self.trainer_state.get("log_history", [])


def result_metrics(metrics: dict) -> dict[str, float]:
    """Numeric results only, without Trainer bookkeeping and without the `test_`/`eval_` prefix."""
    results = {}
    for key, value in metrics.items():
        name = key.removeprefix("test_").removeprefix("eval_")
        if isinstance(value, int | float) and not isinstance(value, bool) and not name.endswith(NOT_METRICS):
            results[name] = float(value)
    return results


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder, refusing (with every problem listed) when the card could not be truthful."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise IncompleteRunError(f"Run folder {directory} does not exist.")
    problems: list[str] = []
    try:
        record = RunRecord.read(directory)
    except InvalidRunRecord as error:
        problems.append(str(error))
    config = _read_json(directory / "config.json", problems, "written by trainer.save_model()")
    trainer_state = _read_json(directory / "trainer_state.json", problems, "written by trainer.save_state()")
    num_parameters, dtypes = _count_parameters(directory, problems)
    if problems:
        raise IncompleteRunError(f"Cannot build a model card from {directory}:\n- " + "\n- ".join(problems))
    return Run(directory, record, config, trainer_state, num_parameters, dtypes)


def _read_json(path: Path, problems: list[str], origin: str) -> dict | None:
    if not path.is_file():
        problems.append(f"{path.name} is missing ({origin}).")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.append(f"{path.name} is not valid JSON: {error}.")
        return None


def _count_parameters(directory: Path, problems: list[str]) -> tuple[int, tuple[str, ...]]:
    """Sum the element counts in the safetensors headers (no tensor is loaded), single file or shards."""
    files = weight_files(directory)
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        problems.append(f"Weights are missing: {', '.join(missing)} (the card counts parameters from them).")
        return 0, ()
    total, dtypes = 0, set()
    for path in files:
        with open_weights(path) as weights:
            for key in weights.keys():
                tensor = weights.get_slice(key)
                total += math.prod(tensor.get_shape())
                dtypes.add(tensor.get_dtype())
    return total, tuple(sorted(dtypes))
