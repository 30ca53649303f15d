"""Run under `torchrun --nproc_per_node 2`: one FSDP2 (`fully_shard`) training step of a tiny model on CPU/gloo.

Each rank also runs the same step on an unsharded copy; rank 0 writes both losses (before and after the
step) and the placement of a sharded weight to the JSON file named on the command line.
"""

import copy
import json
import sys

import torch
import torch.distributed as dist
import transformers
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from custom_transformer import CustomTransformerConfig, CustomTransformerForCausalLM


def train_step(model, input_ids) -> tuple[float, float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    optimizer.step()
    return loss.item(), model(input_ids=input_ids, labels=input_ids).loss.item()


def main(result_path: str):
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    torch.manual_seed(0)  # same weights and the same batch on every rank
    config = CustomTransformerConfig.from_preset(
        sys.argv[2],
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    model = CustomTransformerForCausalLM(config)
    reference = copy.deepcopy(model)
    input_ids = torch.randint(0, 99, (4, 12))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    sharded = train_step(model, input_ids)
    unsharded = train_step(reference, input_ids)
    weight = model.model.layers[0].self_attn.q_proj.weight
    if dist.get_rank() == 0:
        result = {
            "transformers_version": transformers.__version__,
            "sharded": sharded,
            "unsharded": unsharded,
            "placement": str(weight.placements),
            "local_rows": weight.to_local().shape[0],
        }
        with open(result_path, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
