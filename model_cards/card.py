"""The model card: Hub metadata (`ModelCardData` with model-index results) and a Markdown body.

Every fact comes from a `Run` (config.json, the safetensors headers, trainer_state.json, run_info.json),
so regenerating the card for any run is one call and nothing in it is typed by hand. The prose and layout
are the Jinja template templates/model_card.md, rendered by `ModelCard.from_template` as huggingface_hub
and transformers render theirs; this module computes its variables (`card_variables`). The card is checked
locally after writing (front matter parses, metadata round-trips through `ModelCard.load`); it is never
sent to the Hub's validation endpoint.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from custom_transformer.verify import VerifyError, judge, read_folder

from .plot import CURVES_FILENAME, plot_training_curves
from .run import Run, load_run

CARD_FILENAME = "README.md"
TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
POSITION_SCHEMES = {
    "rope": "rotary (RoPE)",
    "learned": "learned absolute embeddings",
    "sinusoidal": "fixed sinusoidal table (Vaswani et al. 2017)",
    "none": "none",
}
NORM_PLACEMENTS = {
    "pre": "pre-norm (before each sublayer, plus a final norm)",
    "post": "post-norm (after each residual sum)",
}
METRIC_NAMES = {
    "accuracy": "Accuracy",
    "exact_match": "Exact match",
    "f1": "F1",
    "f1_macro": "F1 (macro)",
    "f1_micro": "F1 (micro)",
    "f1_weighted": "F1 (weighted)",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "loss": "Loss",
    "perplexity": "Perplexity",
}
LOWER_IS_BETTER = ("loss", "perplexity", "error")
# What the card says for checkpoints saved before config.json carried `code_version` (custom_transformer 0.2.0).
CODE_VERSION_UNKNOWN = "unknown (saved before 0.2.0)"


def write_model_card(run_dir: str | Path, output_dir: str | Path | None = None, *, repo_id: str | None = None) -> Path:
    """Write README.md and the training-curve PNG for a run into `output_dir` (default: the run folder).

    `repo_id` is what the load snippet loads: the Hub id when the card is pushed, otherwise the folder.
    """
    run = load_run(run_dir)
    output = Path(output_dir or run_dir)
    output.mkdir(parents=True, exist_ok=True)
    curves = plot_training_curves(run.log_history, output / CURVES_FILENAME)
    repo_id = repo_id or f"./{output.resolve().name}"
    path = output / CARD_FILENAME
    build_model_card(run, repo_id, curves.name if curves else None).save(path)
    check_card(path, card_data(run, model_name(run, repo_id)))
    return path


def build_model_card(run: Run, repo_id: str, curves_file: str | None = CURVES_FILENAME) -> ModelCard:
    """Render templates/model_card.md: the card data as front matter, the run's facts as the body."""
    name = model_name(run, repo_id)
    variables = card_variables(run, name, repo_id, curves_file)
    return ModelCard.from_template(card_data(run, name), template_path=str(TEMPLATE_PATH), **variables)


def check_card(path: Path, expected: ModelCardData) -> None:
    """Local validation: the YAML front matter parses and every metadata field survives a reload."""
    loaded = ModelCard.load(path)
    if loaded.data.to_dict() != expected.to_dict() or loaded.data.eval_results != expected.eval_results:
        raise ValueError(f"{path}: the card's metadata does not round-trip through ModelCard.load.")


# -- metadata ----------------------------------------------------------------------------------------------------


def model_name(run: Run, repo_id: str) -> str:
    if run.info.get("model_name"):
        return run.info["model_name"]
    if re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", repo_id):  # a Hub id (not a ./folder): its name
        return repo_id.split("/")[1]
    return f"custom_transformer-{run.info['preset']}-{_slug(run.dataset['name'])}"


def card_data(run: Run, name: str) -> ModelCardData:
    dataset = run.dataset
    results = [
        EvalResult(
            task_type=run.task,
            task_name=run.task_record.pretty_name,
            dataset_type=dataset["name"],
            dataset_name=dataset.get("pretty_name", dataset["name"]),
            dataset_split=run.eval_split,
            metric_type=metric,
            metric_name=metric_name(metric),
            metric_value=value,
        )
        for metric, value in run.metrics.items()
    ]
    return ModelCardData(
        model_name=name,
        base_model=hub_base_model(run),
        language=dataset.get("language"),
        library_name="transformers",
        pipeline_tag=run.task,
        tags=["custom_code", "custom_transformer", run.info["preset"], "generated_from_trainer"],
        datasets=[dataset["name"]],
        metrics=list(run.metrics),
        eval_results=results,
        **hub_license(run),
    )


def hub_base_model(run: Run) -> str | None:
    """`base_model` for the metadata only when it names a Hub model, not a local training run's folder."""
    base_model = run.info.get("base_model")
    if "base_model_is_local" in run.info:  # recorded at training time, where the path was resolvable
        return None if run.info["base_model_is_local"] else base_model
    if not base_model or Path(base_model).exists() or (run.directory.parent / Path(base_model).name).is_dir():
        return None
    return base_model


def hub_license(run: Run) -> dict[str, str]:
    """The model's license (run_info 'license', else the training data's), as a Hub license id or 'other'."""
    license = str(run.info.get("license") or run.dataset["license"]).strip().lower()
    if re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", license):
        return {"license": license}
    return {"license": "other", "license_name": _slug(license)[:64]}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric.replace("_", " ").capitalize())


def baseline_name(run: Run, name: str) -> str:
    """The task row's name for a baseline (training/tasks/), else the key made readable."""
    return run.task_record.baselines.get(name, name.replace("_", " ").capitalize())


# -- body: the template's variables ------------------------------------------------------------------------------


def describe_inputs(config: dict, position_scheme: str) -> dict[str, str]:
    """What the model reads, for the details table (`inputs`), and its limit (`input_limit`)."""
    if config.get("input_embedding", "tokens") == "patches":
        (height, width), (rows, columns) = _pair(config["image_size"]), _pair(config["patch_size"])
        patches = (height // rows) * (width // columns)
        learned = config.get("position_embedding_type") == "learned"
        positions = "learned, one per patch and [CLS]" if learned else position_scheme
        return {
            "inputs": f"{height}x{width} images, {config['num_channels']} channels, in {rows}x{columns} patches "
            f"({patches} patches and [CLS]; positions: {positions})",
            "input_limit": f"Images are resized to {height}x{width} by the image processor"
            + (
                "; at other sizes, `interpolate_pos_encoding=True` stretches positions it was not trained on."
                if learned
                else "."
            ),
        }
    limit = config["max_position_embeddings"]
    return {
        "inputs": f"{config['vocab_size']:,} tokens, up to {limit:,} positions ({position_scheme})",
        "input_limit": f"Inputs are limited to {limit} positions ({position_scheme}).",
    }


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def code_release(run_dir: Path) -> str:
    """Which recorded release the run's code is exactly, as `python -m custom_transformer.verify` says it."""
    try:
        report = judge(read_folder(run_dir, nested=False))
    except VerifyError as error:
        return f"not verified ({error})"
    return report.state.label if report.verified else "not a recorded release (verify shows how it differs)"


def card_variables(run: Run, name: str, repo_id: str, curves_file: str | None) -> dict:
    """What templates/model_card.md says besides the card data (which `from_template` passes as well)."""
    config, dataset, state, task = run.config, run.dataset, run.trainer_state, run.task_record
    position_type = config.get("position_embedding_type")
    sizes = dataset.get("split_sizes") or {}
    return {
        "model_name": name,
        "repo_id": repo_id,  # what the load snippet and the refresh command load
        "preset": run.info["preset"],
        "task_name": task.pretty_name,
        "auto_class": task.auto_class,
        "processor": task.processor,  # also the name of the pipeline's keyword for it
        "processor_class": task.processor_kind.auto_class,
        "example_call": task.example_call,
        "has_pipeline": task.has_pipeline or task.ships_pipeline,
        "ships_pipeline": task.ships_pipeline,
        "intended_use": task.intended_use.format(dataset=dataset["name"]),
        "config": config,  # config.json, as saved
        "architecture": (config.get("architectures") or ["unknown"])[0],
        **describe_inputs(config, POSITION_SCHEMES.get(position_type, position_type)),
        "norm_placement": NORM_PLACEMENTS.get(config.get("norm_placement"), config.get("norm_placement")),
        "labels": labels(run),
        "num_parameters": run.num_parameters,
        "weight_dtypes": run.weight_dtypes,
        "code_version": config.get("code_version") or CODE_VERSION_UNKNOWN,
        "code_release": code_release(run.directory),
        "base_model": run.info.get("base_model"),  # as trained from, a Hub id or a local folder
        "base_model_on_hub": hub_base_model(run) is not None,
        "dataset": dataset,
        "data_files": [Path(f).name if os.path.isabs(f) else f for f in dataset.get("files", [])],
        "split_rows": [(split, f"{n:,}") for split, n in sizes.items()],
        "train_examples": sizes.get("train"),
        "steps": state.get("global_step", "?"),
        "epochs": state.get("epoch", 0),
        "wall_time": _duration(run.info.get("wall_time_seconds")),
        "hardware": run.info.get("hardware"),
        "hyperparameter_rows": hyperparameter_rows(run),
        "curves_file": curves_file,
        "eval_split": run.eval_split,
        "eval_examples": run.eval_examples,
        "metric_names": {metric: metric_name(metric) for metric in run.metrics},
        "baseline_names": {baseline: baseline_name(run, baseline) for baseline in run.baselines},
        "result_rows": result_rows(run),
        "comparisons": baseline_comparisons(run),
    }


def labels(run: Run) -> list[str]:
    """The classifier's labels in id order (config.json `id2label`); none for language models."""
    id2label = run.config.get("id2label")
    if not run.task_record.labels or not id2label:
        return []
    return [id2label[key] for key in sorted(id2label, key=int)]


def hyperparameter_rows(run: Run) -> list[tuple[str, str]]:
    """One (name, value) row per recorded number, nested names dotted; paths of the training machine omitted, and
    settings that do not apply to the run (recorded as None, e.g. `max_seq_length` of an image model) left out."""
    hyperparameters = _flatten(run.info.get("hyperparameters") or {})
    return [(f"`{key}`", _hyperparameter(value)) for key, value in hyperparameters.items() if value is not None]


def result_rows(run: Run) -> list[tuple[str, ...]]:
    """The results table: this model (in bold), then each baseline, one column per metric (n/a where unscored)."""
    rows = [("**this model**", *(f"**{value:.4f}**" for value in run.metrics.values()))]
    for name, values in run.baselines.items():
        rows.append((baseline_name(run, name), *(f"{values[m]:.4f}" if m in values else "n/a" for m in run.metrics)))
    return rows


@dataclass(frozen=True)
class Comparison:
    metric: str
    value: float
    baseline: str  # the strongest baseline on this metric
    best: float
    beats: bool

    @property
    def verdict(self) -> str:
        return "better than" if self.beats else "equal to" if self.value == self.best else "worse than"


def baseline_comparisons(run: Run) -> list[Comparison]:
    """The model against the strongest baseline, per metric (lower is better for losses and perplexity)."""
    comparisons = []
    for metric, value in run.metrics.items():
        scored = {name: values[metric] for name, values in run.baselines.items() if metric in values}
        if not scored:
            continue
        lower_is_better = any(word in metric for word in LOWER_IS_BETTER)
        best_name = (min if lower_is_better else max)(scored, key=scored.get)
        best = scored[best_name]
        beats = value < best if lower_is_better else value > best
        comparisons.append(Comparison(metric, value, best_name, best, beats))
    return comparisons


# -- formatting --------------------------------------------------------------------------------------------------


def _flatten(values: dict, prefix: str = "") -> dict:
    """{"model": {"hidden_size": 32}} -> {"model.hidden_size": 32}: one table row per number."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _hyperparameter(value) -> str:
    """Values as recorded, except paths of the machine that trained the model."""
    if isinstance(value, str) and os.path.isabs(value):
        return "(local path, omitted)"
    return f"`{value}`"


def _duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
