"""Checkpoints saved by an earlier release load with the installed package: the same tensor names, the same outputs.

`fixtures/checkpoints-0.2.0/` holds one tiny checkpoint per preset saved by the code of 0.2.0 (commit 1c3a659) and
the outputs each model gave on the inputs saved beside them. A refactor of the model may move code, never tensors.
The outputs are compared to float32 rounding, not bit for bit: another CPU's matmul kernels sum in another order
(AMD and Intel machines differ by ~5e-6 on these logits), while a moved tensor changes them by whole units.
"""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import custom_transformer

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints-0.2.0"
SAVED = {name: load_file(FIXTURES / "inputs_and_outputs.safetensors")[name] for name in ("input_ids", "attention_mask")}
PRESETS = ("llama", "gpt2", "bert", "vaswani")


def load(preset: str):
    folder = FIXTURES / preset
    config = custom_transformer.CustomTransformerConfig.from_pretrained(folder)
    head = getattr(custom_transformer, config.architectures[0])
    return head.from_pretrained(folder, output_loading_info=True)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_checkpoint_saved_by_0_2_0_loads_with_identical_outputs(preset):
    model, info = load(preset)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        outputs = model.eval()(**SAVED)[0]
    saved = load_file(FIXTURES / "inputs_and_outputs.safetensors")[preset]
    torch.testing.assert_close(outputs, saved, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("preset", PRESETS)
def test_models_save_today_the_tensor_names_0_2_0_saved(preset, tmp_path):
    model, _ = load(preset)
    model.save_pretrained(tmp_path)
    names = {}
    for folder in (FIXTURES / preset, tmp_path):
        with safe_open(folder / "model.safetensors", framework="pt") as weights:
            names[folder] = set(weights.keys())
    assert names[tmp_path] == names[FIXTURES / preset]
