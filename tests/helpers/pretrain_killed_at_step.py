"""Run `training.pretrain` and SIGKILL it right after optimizer step N: a run that dies with no chance to clean
up, at a known point rather than whenever a polling test's clock fires.

Usage: python pretrain_killed_at_step.py N PRETRAIN-ARGUMENTS...
"""

import os
import signal
import sys

from transformers import Trainer, TrainerCallback

from training import pretrain


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        # Runs before the Trainer saves this step's checkpoint: earlier checkpoints are complete, this one is not.
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class TrainerKilledAtStep(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_callback(KillAtStep(int(sys.argv[1])))


pretrain.Trainer = TrainerKilledAtStep
pretrain.main(sys.argv[2:])
