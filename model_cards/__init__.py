"""Model cards, hub-ready export and push for custom_transformer training runs.

Everything is built from a run's real artefacts (the results contract of the training scripts):

    python -m model_cards --run_dir runs/x                         # README.md + training_curves.png
    python -m model_cards export --run_dir runs/x --to hub/x       # self-contained hub-ready folder
    python -m model_cards export --run_dir runs/x --to hub/x --push_to_hub --hub_model_id org/name
"""

import importlib

# Imported on first use (PEP 562): reading weights goes through the model package, which imports torch, and
# `python -m model_cards --help` should not wait for it.
_EXPORTS = {
    "HubUnreachableError": ".hub",
    "IncompleteCheckpointError": ".checkpoint",
    "IncompleteRunError": ".run",
    "Run": ".run",
    "build_model_card": ".card",
    "check_checkpoint": ".checkpoint",
    "export_run": ".export",
    "load_run": ".run",
    "push_to_hub": ".hub",
    "write_model_card": ".card",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
