"""FSDP on CPU: Trainer/accelerate fall back to DDP there, but torch's `fully_shard` (FSDP2) really shards."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
from helpers.transformers_releases import index_marks, release_env

from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION

SCRIPT = Path(__file__).parent / "helpers" / "fsdp_on_cpu.py"


@pytest.mark.parametrize(
    "release", [pytest.param(v, marks=index_marks(v)) for v in (transformers.__version__, MIN_TRANSFORMERS_VERSION)]
)  # the project's release and the floor
@pytest.mark.parametrize("preset", ["llama", "gpt2"])  # untied and tied LM head
def test_fully_sharded_training_step_on_two_cpu_processes_matches_the_unsharded_model(tmp_path, preset, release):
    result = tmp_path / "result.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**release_env(release, hf_home=tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*command, str(SCRIPT), str(result), preset], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(result.read_text())
    assert measured["transformers_version"] == release
    assert measured["placement"] == "(Shard(dim=0),)" and measured["local_rows"] == 16  # half of 32 rows
    before, after = measured["sharded"]
    assert after < before  # the step trained
    assert measured["sharded"] == pytest.approx(measured["unsharded"], abs=1e-5)
