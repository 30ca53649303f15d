"""Everything the tests share that is not a test, fixture or pytest hook: one place for each helper.

`tests/` has no `__init__.py`, so pytest (rootdir-based "prepend" import mode) puts `tests/` on `sys.path`
and the test modules import these as `from helpers.models import tiny_config`. Test modules never import
each other or `conftest.py`; `conftest.py` keeps only fixtures and hooks and imports what it needs from here.

Imported by the tests:

- `models`: tiny configs of every preset (`TINY`, `tiny_config`, `PRESET_NAMES`, `TEXT_PRESETS`, `IMAGE_PRESETS`, `SEQ2SEQ_PRESETS`,
  `DECODER_PRESETS`), the heads a preset has (`heads_for`), seeded tiny models and inputs (`build`, `make_inputs`,
  `make_pixels`, `inputs_for`, `outputs_of`), and tiny configs of the reference families (`tiny_reference_config`).
- `training_data`: synthetic text, classification and tagging data, a tiny tokenizer and base checkpoint,
  and the Trainer flags (`FAST`) the tests of the `training` scripts share.
- `tiny_run`: a real, tiny `training.finetune` run, for the model-card and hub tests.
- `hub_server`: a loopback Hub-API server (`HubServer`) and the token it accepts (`HUB_TOKEN`).
- `contract_checkpoints`: the checkpoint contract: tiny saved checkpoints, what they must give, and a runner
  of `checkpoint_contract.py` under any transformers.
- `transformers_releases`: released transformers versions from the index, each installed once into its own
  release site, and the environment to run this venv's python under one.
- `transformers_test_suite`: fetches transformers' own `ModelTesterMixin` / `ConfigTester` from the sdist
  (`make test` runs it as a script first) and `load`s them in the tests.

Run as scripts, by path (``python tests/helpers/<name>.py``, from any directory):

- `compat_matrix.py`: `make compat`, the checkpoint contract under the newest patch of every 5.x minor.
- `transformers_test_suite.py`: the fetch step of `make test` and `make lock`.

Run by the tests in fresh interpreters, by path (they import nothing from this package):

- `checkpoint_contract.py`: loads the contract checkpoints where `custom_transformer` cannot be imported.
- `generate_without_package.py`: greedy generation from a checkpoint where `custom_transformer` cannot be imported.
- `fsdp_on_cpu.py`: one FSDP2 training step on CPU, under `torchrun --nproc_per_node 2`.
- `pretrain_killed_at_step.py`: `training.pretrain`, SIGKILLed right after a given optimizer step.
"""
