"""The model card: Hub metadata (`ModelCardData` with model-index results) and a Markdown body.

Every fact comes from a `Run` (config.json, the safetensors headers, trainer_state.json, run_info.json),
so regenerating the card for any run is one call and nothing in it is typed by hand. The card is checked
locally after writing (front matter parses, metadata round-trips through `ModelCard.load`); it is never
sent to the Hub's validation endpoint.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .plot import CURVES_FILENAME, plot_training_curves
from .run import Run, load_run

CARD_FILENAME = "README.md"
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
    "f1": "F1",
    "f1_macro": "F1 (macro)",
    "f1_micro": "F1 (micro)",
    "f1_weighted": "F1 (weighted)",
    "precision_macro": "Precision (macro)",
    "recall_macro": "Recall (macro)",
    "loss": "Loss",
    "perplexity": "Perplexity",
}
BASELINE_NAMES = {"majority_class": "Majority class", "tfidf_logreg": "TF-IDF + logistic regression"}
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
    card = build_model_card(run, repo_id or f"./{output.resolve().name}", curves.name if curves else None)
    path = output / CARD_FILENAME
    card.save(path)
    check_card(path, card.data)
    return path


def build_model_card(run: Run, repo_id: str, curves_file: str | None = CURVES_FILENAME) -> ModelCard:
    data = card_data(run, model_name(run, repo_id))
    sections = [
        f"# {data.model_name}\n\n{introduction(run)}",
        model_details(run),
        training_data(run),
        training_procedure(run, curves_file),
        evaluation(run),
        intended_use(run),
        limitations(run),
        how_to_use(run, repo_id),
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n")


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


# -- body ----------------------------------------------------------------------------------------------------------


def introduction(run: Run) -> str:
    origin = f"fine-tuned from `{run.info['base_model']}`" if run.info.get("base_model") else "trained from scratch"
    return (
        f"A {run.num_parameters:,}-parameter `custom_transformer` model (preset `{run.info['preset']}`) for "
        f"{run.task_record.pretty_name.lower()}, {origin} on {run.dataset['name']}. It loads with "
        "`trust_remote_code=True`: the model code ships in this repository.\n\n"
        "This card was generated by `model_cards` from the run's artefacts (`config.json`, the safetensors "
        "weights, `trainer_state.json`, `run_info.json`); regenerate it rather than editing it."
    )


def model_details(run: Run) -> str:
    config = run.config
    architecture = (config.get("architectures") or ["unknown"])[0]
    rows = [
        ("Architecture", f"`{config.get('model_type')}` preset `{run.info['preset']}`, head `{architecture}`"),
        ("Layers", config.get("num_hidden_layers")),
        (
            "Hidden size",
            f"{config.get('hidden_size')} ({config.get('num_attention_heads')} attention heads, "
            f"{config.get('num_key_value_heads')} key/value heads, head size {config.get('head_dim')})",
        ),
        (
            "MLP",
            f"{config.get('mlp_type')}, intermediate size {config.get('intermediate_size')}, "
            f"activation `{config.get('hidden_act')}`",
        ),
        ("Parameters", f"{run.num_parameters:,} (counted in the safetensors weights; {', '.join(run.weight_dtypes)})"),
        (
            "Position scheme",
            f"{POSITION_SCHEMES.get(config.get('position_embedding_type'), config.get('position_embedding_type'))}, "
            f"{config.get('max_position_embeddings')} positions",
        ),
        (
            "Normalisation",
            f"{config.get('norm_type')}, {NORM_PLACEMENTS.get(config.get('norm_placement'), config.get('norm_placement'))}",
        ),
        ("Attention", "causal (decoder)" if config.get("is_decoder") else "bidirectional (encoder)"),
        ("Vocabulary", f"{config.get('vocab_size'):,} tokens"),
        ("Base model", _base_model(run)),
    ]
    if run.task_record.labels and config.get("id2label"):
        labels = [config["id2label"][key] for key in sorted(config["id2label"], key=int)]
        rows.append(("Labels", ", ".join(f"`{label}`" for label in labels)))
    return "## Model details\n\n" + _table(["", ""], rows)


def _base_model(run: Run) -> str:
    if not run.info.get("base_model"):
        return "none (trained from scratch)"
    where = "" if hub_base_model(run) else " (a local checkpoint, not a Hub model)"
    return f"`{run.info['base_model']}`{where}"


def training_data(run: Run) -> str:
    dataset = run.dataset
    files = [Path(f).name if os.path.isabs(f) else f for f in dataset.get("files", [])]
    lines = [
        "## Training data",
        "",
        f"- Dataset: **{dataset['name']}**" + (f" ({dataset['source']})" if dataset.get("source") else ""),
        f"- License: {dataset['license']}",
    ]
    if files:
        lines.append("- Files: " + ", ".join(f"`{f}`" for f in files))
    sizes = dataset.get("split_sizes") or {}
    if sizes:
        lines += ["", _table(["Split", "Examples"], [(split, f"{n:,}") for split, n in sizes.items()])]
    return "\n".join(lines)


def training_procedure(run: Run, curves_file: str | None) -> str:
    state = run.trainer_state
    lines = [
        "## Training procedure",
        "",
        f"Trained for {state.get('global_step', '?')} optimisation steps ({state.get('epoch', 0):.2f} epochs) "
        f"in {_duration(run.info.get('wall_time_seconds'))} of wall time on {run.info.get('hardware', 'unrecorded hardware')}.",
    ]
    hyperparameters = run.info.get("hyperparameters") or {}
    if hyperparameters:
        rows = [(f"`{key}`", _hyperparameter(value)) for key, value in _flatten(hyperparameters).items()]
        lines += ["", "Hyper-parameters:", "", _table(["Name", "Value"], rows)]
    if curves_file:
        lines += [
            "",
            f"![Training loss and evaluation metrics against step]({curves_file})",
            "",
            "Loss and evaluation metrics against optimisation step, from `trainer_state.json`.",
        ]
    else:
        lines += ["", "No training curve: `trainer_state.json` logged no loss or evaluation metric."]
    return "\n".join(lines)


def evaluation(run: Run) -> str:
    metrics = list(run.metrics)
    size = run.eval_examples
    rows = [("**this model**", *(f"**{run.metrics[m]:.4f}**" for m in metrics))]
    for name, values in run.baselines.items():
        rows.append((baseline_name(name), *(f"{values[m]:.4f}" if m in values else "n/a" for m in metrics)))
    lines = [
        "## Evaluation",
        "",
        f"Results on the `{run.eval_split}` split of {run.dataset['name']}"
        + (f" ({size:,} examples)" if size else "")
        + ("; the baselines were measured on the same split." if run.baselines else "."),
        "",
        _table(["Model", *map(metric_name, metrics)], rows),
    ]
    comparisons = baseline_comparisons(run)
    if comparisons:
        lines.append("")
        for c in comparisons:
            verdict = "better than" if c.beats else "equal to" if c.value == c.best else "worse than"
            lines.append(
                f"- {metric_name(c.metric)}: {c.value:.4f}, {verdict} the strongest baseline "
                f"({baseline_name(c.baseline)}, {c.best:.4f}; difference {c.value - c.best:+.4f})."
            )
    else:
        lines += ["", "No baselines were recorded for this run, so these numbers have no reference point."]
    return "\n".join(lines)


@dataclass(frozen=True)
class Comparison:
    metric: str
    value: float
    baseline: str  # the strongest baseline on this metric
    best: float
    beats: bool


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


def baseline_name(name: str) -> str:
    return BASELINE_NAMES.get(name, name.replace("_", " ").capitalize())


def intended_use(run: Run) -> str:
    use = run.task_record.intended_use.format(dataset=run.dataset["name"])
    return (
        "## Intended use\n\n"
        f"{use} A small research and demonstration checkpoint of the configurable `custom_transformer` "
        "architecture; not meant for decisions about people or for production use without further evaluation."
    )


def limitations(run: Run) -> str:
    sizes = run.dataset.get("split_sizes") or {}
    config = run.config
    bullets = [
        f"Trained on one dataset ({run.dataset['name']}"
        + (f", {sizes['train']:,} training examples" if "train" in sizes else "")
        + f") and evaluated only on its `{run.eval_split}` split; expect worse results on text unlike it.",
        f"Inputs are limited to {config.get('max_position_embeddings')} positions "
        f"({POSITION_SCHEMES.get(config.get('position_embedding_type'), config.get('position_embedding_type'))}).",
    ]
    bullets += [
        f"On {metric_name(c.metric)} it does not beat the {baseline_name(c.baseline)} baseline "
        f"({c.value:.4f} against {c.best:.4f}): prefer the baseline where that metric matters."
        for c in baseline_comparisons(run)
        if not c.beats
    ]
    bullets += [
        "No evaluation of bias, toxicity or safety was done.",
        "Loading runs the Python files in this repository (`trust_remote_code=True`): read them, and pin "
        "`revision=` to the commit you reviewed so that later pushes cannot change the code you run.",
    ]
    return "## Limitations\n\n" + "\n".join(f"- {bullet}" for bullet in bullets)


def how_to_use(run: Run, repo_id: str) -> str:
    auto_class = run.task_record.auto_class
    return f"""## How to use

{code_version_note(run, repo_id)}

```python
from transformers import {auto_class}, AutoTokenizer, pipeline

repo_id = "{repo_id}"
# The repository ships Python code that runs on load (trust_remote_code=True).
# Pin `revision` to the commit hash you reviewed instead of a branch name.
revision = "main"
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True, revision=revision)
model = {auto_class}.from_pretrained(repo_id, trust_remote_code=True, revision=revision)

pipe = pipeline("{run.task}", model=model, tokenizer=tokenizer)
print({run.task_record.example_call})
```"""


def code_version_note(run: Run, repo_id: str) -> str:
    """Which custom_transformer code the checkpoint runs (config.json `code_version`), and how to update it."""
    code_version = run.config.get("code_version") or CODE_VERSION_UNKNOWN
    return (
        f"This checkpoint runs `custom_transformer` code version **{code_version}** (`code_version` in "
        "`config.json`), the code shipped with it, whatever version of the package you have. With the "
        f"`custom_transformer` package installed, `python -m custom_transformer.refresh {repo_id}` replaces that code "
        "by the installed release's, weights untouched (one commit on a Hub repo; `--dry-run` shows what would "
        "change first)."
    )


# -- formatting --------------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "an unrecorded amount"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
