"""Hub kernels: a model computes the same numbers whether or not the `kernels` package is installed.

transformers 5.25 depends on `kernels` and kernelizes every model on `from_pretrained` unless USE_HUB_KERNELS is
off. `kernelize` replaces the forward of each module whose class `use_kernel_forward_from_hub` marked with a
`kernel_layer_name` (or whose class lists `_kernel_funcs`); on CUDA/ROCm/XPU, transformers' activation classes
are such layers, swapped for kernels downloaded from the Hub at load time. Our models keep their activations
out of reach (`Activation`) unless the config opts in with `hub_kernels=True`.

`kernels>=0.19.1` is not on this machine's index, so the marking is reproduced here as the decorator does it.
"""

import inspect

import pytest
import torch
from helpers.models import PRESET_NAMES, heads_for, inputs_for, outputs_of, tiny_config
from transformers import activations
from transformers.activations import ACT2FN

from custom_transformer.modeling_custom_transformer import Activation

# Every activation of transformers, marked as `kernels.use_kernel_forward_from_hub(name)` marks a layer class.
ACTIVATION_CLASSES = [
    cls for _, cls in inspect.getmembers(activations, inspect.isclass) if issubclass(cls, torch.nn.Module)
]


@pytest.fixture
def activations_are_hub_kernel_layers(monkeypatch):
    for cls in ACTIVATION_CLASSES:
        monkeypatch.setattr(cls, "kernel_layer_name", cls.__name__, raising=False)


def kernelizable(model: torch.nn.Module) -> list[str]:
    """The modules `kernelize` would replace the forward of: those whose class carries a hub-kernel mark."""
    return [
        name
        for name, module in model.named_modules()
        if getattr(type(module), "kernel_layer_name", None) or getattr(type(module), "_kernel_funcs", None)
    ]


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_no_module_of_any_head_is_one_kernelize_would_replace(activations_are_hub_kernel_layers, preset):
    for head in heads_for(preset).values():
        assert kernelizable(head(tiny_config(preset))) == [], head.__name__


def test_with_hub_kernels_on_the_activations_are_transformers_own_layers_for_kernelize(
    activations_are_hub_kernel_layers,
):
    model = heads_for("llama")["AutoModelForCausalLM"](tiny_config("llama", hub_kernels=True))
    assert kernelizable(model) == ["model.layers.0.mlp.act_fn", "model.layers.1.mlp.act_fn"]


@pytest.mark.parametrize("name", ["silu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "quick_gelu"])
def test_our_activation_computes_exactly_transformers_activation(name):
    x = torch.linspace(-6, 6, 1001)
    assert torch.equal(Activation(name)(x), ACT2FN[name](x))


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_the_opt_in_changes_no_number_without_kernels(preset):
    logits = {}
    for hub_kernels in (False, True):
        torch.manual_seed(0)
        model = heads_for(preset)["AutoModel"](tiny_config(preset, hub_kernels=hub_kernels)).eval()
        with torch.no_grad():
            logits[hub_kernels] = outputs_of(model, **inputs_for(preset))
    assert torch.equal(logits[False], logits[True])


def test_hub_kernels_must_be_a_bool():
    with pytest.raises(ValueError, match=r"^hub_kernels='yes' must be True or False\.$"):
        tiny_config("llama", hub_kernels="yes")


def test_a_saved_model_opts_in_at_load_time(tmp_path):
    heads_for("llama")["AutoModelForCausalLM"](tiny_config("llama")).save_pretrained(tmp_path)
    loaded = heads_for("llama")["AutoModelForCausalLM"].from_pretrained(tmp_path, hub_kernels=True)
    assert loaded.config.hub_kernels is True
    assert type(loaded.model.layers[0].mlp.act_fn) is type(ACT2FN["silu"])
