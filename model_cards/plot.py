"""Training curves from the Trainer's `log_history`: loss (train and eval) and eval metrics against step.

Drawn with matplotlib's object API on an Agg canvas, so no display, no pyplot global state and no
backend switch in whatever process calls it.
"""

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .run import NOT_METRICS

CURVES_FILENAME = "training_curves.png"


def curves(log_history: list[dict]) -> dict[str, dict[int, float]]:
    """Series name -> {step: value}: `loss`, `eval_loss` and every `eval_<metric>` the Trainer logged.

    A later entry for the same step wins (the final `trainer.evaluate()` repeats the last eval step).
    """
    series: dict[str, dict[int, float]] = {}
    for entry in log_history:
        for key, value in entry.items():
            is_curve = key == "loss" or (key.startswith("eval_") and not key.endswith(NOT_METRICS))
            if is_curve and "step" in entry and isinstance(value, int | float):
                series.setdefault(key, {})[entry["step"]] = float(value)
    return series


def plot_training_curves(log_history: list[dict], path: str | Path) -> Path | None:
    """Write the PNG; `None` (and no file) when the run logged no loss or eval metric at all."""
    series = curves(log_history)
    if not series:
        return None
    losses = {name: points for name, points in series.items() if name in ("loss", "eval_loss")}
    metrics = {name: points for name, points in series.items() if name not in losses}
    panels = [(panel, ylabel) for panel, ylabel in ((losses, "loss"), (metrics, "eval metric")) if panel]
    figure = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    for axes, (panel, ylabel) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
        for name, points in sorted(panel.items(), key=lambda item: (item[0] != "loss", item[0])):
            steps = sorted(points)
            axes.plot(steps, [points[s] for s in steps], marker="o", markersize=3, label=_label(name))
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("step")
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend()
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


def _label(name: str) -> str:
    return {"loss": "train loss", "eval_loss": "eval loss"}.get(name, name.removeprefix("eval_"))
