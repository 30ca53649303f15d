"""Run under `torchrun --nproc_per_node 2` (CPU, gloo): a checkpoint loaded tensor-parallel, without the package.

Usage: python -m torch.distributed.run --standalone --nproc_per_node 2 tensor_parallel_without_package.py CASES.json OUT

`from_pretrained(path, trust_remote_code=True, distributed_config=DistributedConfig(tp_plan="auto"))`, with
`custom_transformer` blocked: the plan comes from the checkpoint's own config (`base_model_tp_plan`) and code.
Every rank writes OUT-<rank>.json: how a sharded weight is placed, the logits of the batch and the greedy tokens
of the left-padded prompt (every rank feeds the same inputs).
"""

import json
import runpy
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import transformers

# Before any checkpoint loads: `import custom_transformer` fails from here on (the project's one blocker).
runpy.run_path(str(Path(__file__).resolve().parents[2] / "training" / "without_package.py"))

from transformers.distributed import DistributedConfig  # noqa: E402


def main(cases_path: str, out: str):
    cases = json.loads(Path(cases_path).read_text())
    model = transformers.AutoModelForCausalLM.from_pretrained(
        cases["causal"], trust_remote_code=True, distributed_config=DistributedConfig(tp_plan="auto")
    ).eval()
    batch = {key: torch.tensor(value) for key, value in cases["batch"].items()}
    prompt = {key: torch.tensor(value) for key, value in cases["prompt"].items()}
    new_tokens = cases["max_new_tokens"]
    weight = model.model.layers[0].self_attn.q_proj.weight
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits
        generated = model.generate(**prompt, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    result = {
        "transformers_version": transformers.__version__,
        "module": type(model).__module__,
        "world_size": dist.get_world_size(),
        "q_proj_placements": str(getattr(weight, "placements", "not a DTensor")),
        "q_proj_local_shape": list(weight.to_local().shape) if hasattr(weight, "to_local") else list(weight.shape),
        "logits": logits.tolist(),
        "generated": generated[:, prompt["input_ids"].shape[1] :].tolist(),
    }
    Path(f"{out}-{dist.get_rank()}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:3])
