"""The protocol between transformers and our model code, as the installed release speaks it.

Every fact `custom_transformer.transformers_compat` reads off the installed transformers is checked here by
using it the way transformers' own callers do: `generate` with each cache, a cache handed in under either
name, continuous batching, `Trainer.predict` with the cache on, and gradient checkpointing with a cache.
A release that renames something again turns one of these red instead of giving users wrong tokens.
"""

import importlib.metadata
import logging
import os
from pathlib import Path

import pytest
import torch
import transformers
from helpers.models import DECODER_PRESETS, make_inputs, tiny_config
from helpers.side_packages import TORCHAO_SITE
from packaging.utils import canonicalize_name
from packaging.version import Version
from transformers import DynamicCache, Trainer, TrainingArguments

from custom_transformer import CustomTransformerForCausalLM
from custom_transformer import transformers_compat as compat

GREEDY = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}


def decoder(preset: str = "llama") -> CustomTransformerForCausalLM:
    torch.manual_seed(0)
    return CustomTransformerForCausalLM(tiny_config(preset)).eval()


def test_every_protocol_fact_resolved_to_a_name_we_know():
    resolved = {
        "transformers": transformers.__version__,
        "cache keyword": compat.CACHE_KWARG,
        "cache output field": compat.CACHE_FIELD,
        "mask cache keyword": compat._MASK_CACHE_KEYWORD,
        "mask embeds keyword": compat._MASK_EMBEDS_KEYWORD,
        "cache.update takes cache_kwargs": compat._UPDATE_TAKES_CACHE_KWARGS,
    }
    print("\n".join(f"{name:>32}: {value}" for name, value in resolved.items()))
    assert compat.CACHE_KWARG in ("cache", "past_key_values")
    assert compat.CACHE_FIELD in ("cache", "past_key_values")
    assert compat._MASK_CACHE_KEYWORD in ("cache", "past_key_values")


def test_an_unrecognised_protocol_fails_at_import_naming_the_release_and_the_fix():
    with pytest.raises(ImportError, match=r"does not recognise transformers .*custom_transformer\.refresh"):
        compat._one_of({"kv_cache", "input_ids"}, ("cache", "past_key_values"), "generate's cache keyword")


@pytest.mark.parametrize("preset", DECODER_PRESETS)
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_cached_static_and_uncached_generation_agree_without_a_deprecation(preset, attn_implementation, caplog):
    model = decoder(preset)
    model.set_attn_implementation(attn_implementation)
    input_ids, attention_mask = make_inputs(left_padding=True)
    with caplog.at_level(logging.WARNING, logger="transformers"):
        uncached = model.generate(input_ids, attention_mask=attention_mask, use_cache=False, **GREEDY)
        dynamic = model.generate(input_ids, attention_mask=attention_mask, **GREEDY)
        static = model.generate(input_ids, attention_mask=attention_mask, cache_implementation="static", **GREEDY)
    assert torch.equal(dynamic, uncached)
    assert torch.equal(static, uncached)
    # 5.24 reports renamed output fields on the logger, not through `warnings` (which pytest turns into errors).
    assert not [r.getMessage() for r in caplog.records if "deprecat" in r.getMessage().lower()]


@pytest.mark.parametrize("name", ["past_key_values", compat.CACHE_KWARG])
def test_a_cache_passed_under_either_name_is_filled_and_returned(name):
    model = decoder()
    input_ids, _ = make_inputs()
    cache = DynamicCache(config=model.config)
    out = model(input_ids[:, :5], use_cache=True, **{name: cache})
    assert getattr(out, compat.CACHE_FIELD) is cache
    assert cache.get_seq_length() == 5
    # The next step reuses the cache: its logits match one uncached pass over all 7 tokens.
    step = model(input_ids[:, 5:], use_cache=True, **{name: cache}).logits
    assert torch.allclose(step, model(input_ids, use_cache=False).logits[:, 5:], atol=1e-5)


@pytest.mark.skipif(compat.CACHE_KWARG != "cache", reason="`cache=` is a paged-cache keyword before 5.24")
def test_two_different_caches_under_both_names_are_refused():
    model = decoder()
    input_ids, _ = make_inputs()
    with pytest.raises(ValueError, match="as `cache=` or as `past_key_values=`, not both"):
        model(input_ids, cache=DynamicCache(config=model.config), past_key_values=DynamicCache(config=model.config))


def test_generate_fills_the_cache_the_caller_passes():
    model = decoder()
    input_ids, attention_mask = make_inputs(left_padding=True)
    cache = DynamicCache(config=model.config)
    model.generate(input_ids, attention_mask=attention_mask, **{compat.CACHE_KWARG: cache}, **GREEDY)
    assert cache.get_seq_length() == input_ids.shape[1] + GREEDY["max_new_tokens"] - 1


def test_trainer_predict_with_the_cache_on_returns_only_logits(tmp_path):
    model = decoder()
    input_ids, _ = make_inputs()
    rows = [{"input_ids": row, "labels": row} for row in input_ids.tolist()]
    args = TrainingArguments(tmp_path, use_cpu=True, report_to=[], per_device_eval_batch_size=2, use_cache=True)
    prediction = Trainer(model=model, args=args).predict(rows)
    assert prediction.predictions.shape == (2, 7, model.config.vocab_size)  # the cache is left out


def test_gradient_checkpointed_training_with_a_cache_runs_backward():
    model = decoder().train()
    model.activation_checkpointing_enable()
    input_ids, _ = make_inputs()
    cache = DynamicCache(config=model.config)
    out = model(input_ids, labels=input_ids, use_cache=True, **{compat.CACHE_KWARG: cache})
    out.loss.backward()
    assert all(p.grad is not None for p in model.model.layers.parameters())


# `make lock` points this at the candidate lock while the suite vets it.
LOCK = Path(os.environ.get("CT_LOCK", Path(__file__).parents[1] / "constraints.txt"))


def locked_versions() -> dict[str, str]:
    pins = (line.split("==") for line in LOCK.read_text().splitlines() if "==" in line and not line.startswith("#"))
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_no_release_newer_than_the_checkpoint_code_names_as_verified():
    """`make lock` cannot move to a release `make compat` has not verified; it may stay below one (5.24.0 while
    5.25.0, verified, needs a `kernels` this index lacks)."""
    assert Version(locked_versions()["transformers"]) <= Version(compat.NEWEST_VERIFIED_TRANSFORMERS_VERSION)


def installed_version(name: str) -> str | None:
    """The version `import` finds first on sys.path, else the one installed beside the venv (torchao, see
    helpers/side_packages.py). Not `distributions()` as a whole: it also lists copies that libraries vendor and
    append to sys.path (setuptools' `_vendor/packaging-*`, added once inductor imports it)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        beside = next(iter(importlib.metadata.distributions(name=name, path=[str(TORCHAO_SITE)])), None)
        return beside.version if beside else None


def test_the_suite_runs_on_exactly_the_locked_versions():
    installed = {name: installed_version(name) for name in locked_versions()}
    drifted = {
        name: f"locked {pinned}, installed {installed[name] or 'nothing'}"
        for name, pinned in locked_versions().items()
        if Version(installed[name] or "0").public != Version(pinned).public  # 2.13.0+cpu is 2.13.0
    }
    assert not drifted, f"this environment is not the locked one (re-create it with `make install`): {drifted}"
