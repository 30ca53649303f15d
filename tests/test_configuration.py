"""CustomTransformerConfig: transformers' ConfigTester, defaults, presets, validation messages, config.json."""

import logging
import unittest

import pytest
from helpers.models import PRESET_NAMES, TINY, tiny_config
from helpers.transformers_test_suite import load
from transformers import AutoConfig

from custom_transformer import PRESETS, CustomTransformerConfig


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_passes_transformers_config_tester(name):
    """The checks every config in transformers passes: JSON and save/load round-trips (also from a subfolder),
    `num_labels`, the common `PreTrainedConfig` arguments kept, and no warning when built without arguments."""
    config_tester = load("test_configuration_common").ConfigTester
    config_tester(
        unittest.TestCase(), config_class=CustomTransformerConfig, **{**PRESETS[name], **TINY}
    ).run_common_tests()


def test_default_config_builds_without_logging_a_warning():
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        config = CustomTransformerConfig()
    finally:
        logger.removeHandler(handler)
    assert records == []
    assert (config.model_type, config.head_dim, config.num_key_value_heads) == ("custom_transformer", 64, 12)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_round_trip_through_config_json(tmp_path, name):
    config = tiny_config(name, id2label={0: "neg", 1: "pos"})
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is CustomTransformerConfig
    assert reloaded.to_dict() == {**config.to_dict(), "_name_or_path": str(tmp_path)}


def test_preset_overrides_replace_preset_values():
    config = CustomTransformerConfig.from_preset("llama", hidden_size=64, num_attention_heads=4, num_hidden_layers=1)
    assert (config.hidden_size, config.head_dim, config.num_hidden_layers) == (64, 16, 1)
    assert config.norm_type == "rmsnorm" and config.mlp_type == "gated"
    assert PRESETS["llama"]["hidden_size"] == 4096  # presets are data and stay untouched


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(
        ValueError, match="Unknown preset 'gpt5'. Known presets: bart, bert, gpt2, llama, marian, vaswani, vit."
    ):
        CustomTransformerConfig.from_preset("gpt5")


def test_encoders_do_not_use_a_kv_cache_by_default():
    assert tiny_config("bert").use_cache is False
    assert tiny_config("llama").use_cache is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"hidden_size": 30}, "hidden_size=30 is not divisible by num_attention_heads=4"),
        ({"num_key_value_heads": 3}, "num_attention_heads=4 is not divisible by num_key_value_heads=3"),
        ({"hidden_act": "swoosh"}, "hidden_act='swoosh' is not a known activation"),
        ({"position_embedding_type": "alibi"}, "position_embedding_type='alibi' is not supported. Choose one of"),
        ({"norm_type": "batchnorm"}, "norm_type='batchnorm' is not supported"),
        ({"norm_placement": "sandwich"}, "norm_placement='sandwich' is not supported"),
        ({"mlp_type": "moe"}, "mlp_type='moe' is not supported"),
        ({"classifier_pooling": "max"}, "classifier_pooling='max' is not supported"),
        ({"num_hidden_layers": 0}, "num_hidden_layers=0 must be a positive integer"),
        ({"rope_parameters": {"rope_type": "spiral", "rope_theta": 1e4}}, r"rope_parameters\['rope_type'\]='spiral'"),
        ({"head_dim": 7, "num_key_value_heads": 4}, "head_dim=7 must be even"),
        ({"hidden_dropout": 1.5}, r"hidden_dropout=1.5 must be in \[0, 1\)"),
        (
            {"input_embedding": "pixels"},
            "input_embedding='pixels' is not supported. Choose one of: 'tokens', 'patches'",
        ),
    ],
)
def test_invalid_settings_raise_naming_the_field_and_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config("llama", **overrides)


@pytest.mark.parametrize(("name", "stack"), [("llama", "decoder"), ("gpt2", "decoder"), ("bert", "encoder")])
def test_the_stack_is_read_off_is_decoder_so_configs_saved_before_it_existed_load_unchanged(tmp_path, name, stack):
    config = tiny_config(name)
    saved = config.to_dict()
    del saved["input_embedding"]  # as config.json was up to 0.2.0
    assert CustomTransformerConfig(**saved).stack == stack
    assert CustomTransformerConfig(**saved).input_embedding == "tokens"


def test_explicit_head_dim_may_differ_from_hidden_size_over_heads():
    config = tiny_config("llama", head_dim=16)
    assert config.head_dim * config.num_attention_heads == 64 != config.hidden_size


def test_rope_scaling_variants_come_from_transformers():
    config = tiny_config("llama", rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
    assert config.rope_parameters["rope_type"] == "linear"
