"""Model cards, hub-ready export and push for custom_transformer training runs.

Everything is built from a run's real artefacts (the results contract of the training scripts):

    python -m model_cards --run_dir runs/x                         # README.md + training_curves.png
    python -m model_cards export --run_dir runs/x --to hub/x       # self-contained hub-ready folder
    python -m model_cards export --run_dir runs/x --to hub/x --push_to_hub --hub_model_id org/name
"""

from .card import build_model_card, write_model_card
from .checkpoint import IncompleteCheckpointError, check_checkpoint
from .export import export_run
from .hub import HubUnreachableError, push_to_hub
from .run import IncompleteRunError, Run, load_run

__all__ = [
    "HubUnreachableError",
    "IncompleteCheckpointError",
    "IncompleteRunError",
    "Run",
    "build_model_card",
    "check_checkpoint",
    "export_run",
    "load_run",
    "push_to_hub",
    "write_model_card",
]
