"""Compiled and exported generation with a static cache: the GPU fast path of `generate` and the ExecuTorch route.

A static cache's length is a tensor (a counter buffer from 5.4, a count of filled slots before), so positions derived from it
must stay tensor arithmetic: `torch.arange(past, past + n)` made dynamo turn the length into an unbacked symbol and
fail with `PendingUnbackedSymbolNotFound`. Each test compares with the eager model run in this process.
"""

import pytest
import torch
from helpers.models import build, make_inputs
from helpers.static_cache_step import StaticCacheDecodeStep
from torch.testing import assert_close
from transformers import CompileConfig, StaticCache

from custom_transformer.modeling_custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForConditionalGeneration,
)

pytestmark = pytest.mark.torch_compile_test

MAX_CACHE_LEN = 16


def prefilled_cache(model, prompt: torch.Tensor) -> StaticCache:
    """A static cache holding `prompt`, filled by the eager model."""
    cache = StaticCache(config=model.config, max_cache_len=MAX_CACHE_LEN)
    model(prompt, past_key_values=cache, use_cache=True)
    return cache


def token_ids(length: int) -> torch.Tensor:
    """One row of non-padding ids: up to 5.3 a static cache counts its length as the slots with a non-zero key,
    and a padding token's key is zero in a model without biases or absolute positions."""
    return torch.randint(3, 99, (1, length), generator=torch.Generator().manual_seed(0))


def next_token_logits(model, ids: torch.Tensor) -> torch.Tensor:
    """What a decode step must reproduce: the last position's logits of a cache-free forward over all of `ids`."""
    return model(ids, use_cache=False).logits[:, -1:]


def eager_and_compiled_generations(model, input_ids, attention_mask, **greedy) -> tuple[list, list]:
    """`generate` with a static cache, eagerly and on its compiled path (asserted taken)."""
    eager = model.generate(input_ids, attention_mask=attention_mask, **greedy)
    # generate compiles its decode steps itself on accelerators; `_compile_all_devices` is its switch for CPU.
    compile_config = CompileConfig(fullgraph=True, mode="default")
    compile_config._compile_all_devices = True
    compiled_calls = []
    model.get_compiled_call = lambda config: (
        compiled_calls.append(config) or type(model).get_compiled_call(model, config)
    )
    torch._dynamo.reset()
    compiled = model.generate(input_ids, attention_mask=attention_mask, compile_config=compile_config, **greedy)
    assert compiled_calls, "generate did not take its compiled path"
    return eager.tolist(), compiled.tolist()


def test_compiled_greedy_static_cache_generation_gives_the_eager_tokens():
    model = build(CustomTransformerForCausalLM, "llama")
    input_ids, attention_mask = make_inputs(seq=5, left_padding=True)
    greedy = {"max_new_tokens": 4, "do_sample": False, "cache_implementation": "static"}
    eager, compiled = eager_and_compiled_generations(model, input_ids, attention_mask, **greedy)
    assert compiled == eager


def test_compiled_static_cache_translation_gives_the_eager_tokens():
    """The encoder-decoder's decode step compiles too: the encoder's keys and values sit in a second static cache."""
    model = build(CustomTransformerForConditionalGeneration, "vaswani")
    input_ids, attention_mask = make_inputs(seq=5)
    greedy = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False, "cache_implementation": "static"}
    eager, compiled = eager_and_compiled_generations(model, input_ids, attention_mask, **greedy)
    assert compiled == eager


# How a decode step learns its position: from the cache's length, or given as generate gives it (by release).
POSITIONS = {
    "derived from the cache": lambda position: {},
    "position_ids": lambda position: {"position_ids": position[None]},
    "cache_position": lambda position: {"cache_position": position},
}


@pytest.mark.parametrize("positions", POSITIONS)
def test_a_static_cache_decode_step_compiles_fullgraph_without_recompiling(decoder_preset, positions):
    model = build(CustomTransformerForCausalLM, decoder_preset)
    ids = token_ids(7)
    cache = prefilled_cache(model, ids[:, :5])

    def step(token, position):
        return model(token, past_key_values=cache, use_cache=True, **POSITIONS[positions](position)).logits

    torch._dynamo.reset()
    compiled = torch.compile(step, fullgraph=True, backend="eager")  # dynamo alone finds graph breaks, fast on CPU
    assert_close(compiled(ids[:, 5:6], torch.tensor([5])), next_token_logits(model, ids[:, :6]))
    with torch._dynamo.config.patch(error_on_recompile=True):  # the next token reuses the graph
        assert_close(compiled(ids[:, 6:7], torch.tensor([6])), next_token_logits(model, ids))


def test_a_static_cache_decode_step_exports_strict_with_the_eager_logits():
    model = build(CustomTransformerForCausalLM, "llama")
    ids = token_ids(7)
    program = torch.export.export(
        StaticCacheDecodeStep(model, prefilled_cache(model, ids[:, :5])), (ids[:, 5:6],), strict=True
    )
    step = program.module()  # holds its own copy of the cache, advanced by each call
    assert_close(step(ids[:, 5:6]), next_token_logits(model, ids[:, :6]))
    assert_close(step(ids[:, 6:7]), next_token_logits(model, ids))


def test_transformers_executorch_export_decodes_token_by_token_like_eager():
    from transformers import GenerationConfig
    from transformers.integrations.executorch import convert_and_export_with_cache

    model = build(CustomTransformerForCausalLM, "llama")
    model.generation_config = GenerationConfig(
        use_cache=True,
        cache_implementation="static",
        max_length=MAX_CACHE_LEN,
        cache_config={"batch_size": 1, "max_cache_len": MAX_CACHE_LEN},
    )
    ids = token_ids(4)
    step = convert_and_export_with_cache(model).module()  # torch.export strict, upstream's ExecuTorch entry point
    logits = [step(input_ids=ids[:, i : i + 1], cache_position=torch.tensor([i])) for i in range(ids.shape[1])]
    assert_close(torch.cat(logits, dim=1), model(ids, use_cache=False).logits)
