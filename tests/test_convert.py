"""The conversion tool: the documented command line, what it writes, and refusals that name the setting and the fix."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.models import tiny_config, tiny_reference_config
from safetensors import safe_open
from tokenizers import Tokenizer, models, pre_tokenizers
from torch import nn
from transformers import AutoConfig, AutoTokenizer, GPT2LMHeadModel, LlamaForCausalLM, PreTrainedTokenizerFast

from custom_transformer import CustomTransformerForCausalLM, CustomTransformerForSequenceClassification
from custom_transformer.convert import convert, from_torch_encoder, main

REPOSITORY = Path(__file__).resolve().parents[1]


def word_level_tokenizer(words: list[str]) -> PreTrainedTokenizerFast:
    vocab = {word: index for index, word in enumerate(["[UNK]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def save_reference_config(folder: Path, model_type: str, architecture: str, **overrides) -> Path:
    """A checkpoint folder holding only config.json: refusals happen before any weight is read."""
    config = tiny_reference_config(model_type, architectures=[architecture], **overrides)
    config.save_pretrained(folder)
    return folder


def test_command_line_converts_a_gpt2_checkpoint_into_a_self_contained_custom_checkpoint(tmp_path):
    GPT2LMHeadModel(tiny_reference_config("gpt2")).save_pretrained(tmp_path / "gpt2")
    tokenizer = word_level_tokenizer(["the", "cat", "sat"])
    tokenizer.save_pretrained(tmp_path / "gpt2")  # the tokenizer travels with the weights
    command = [
        sys.executable,
        "-m",
        "custom_transformer.convert",
        "--from",
        tmp_path / "gpt2",
        "--to",
        tmp_path / "out",
    ]
    result = subprocess.run(command, cwd=REPOSITORY, env=os.environ, capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert "Wrote CustomTransformerForCausalLM" in result.stdout
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architectures"] == ["CustomTransformerForCausalLM"]
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_custom_transformer.CustomTransformerForCausalLM"
    assert (tmp_path / "out" / "modeling_custom_transformer.py").is_file()
    assert not (tmp_path / "out" / "convert.py").exists()  # a package tool, not checkpoint code
    assert (
        AutoTokenizer.from_pretrained(tmp_path / "out")("the cat sat").input_ids == tokenizer("the cat sat").input_ids
    )
    with safe_open(tmp_path / "out" / "model.safetensors", "pt") as weights:
        assert "lm_head.weight" not in weights.keys()  # tied to the input embeddings, stored once
    _, loading_info = CustomTransformerForCausalLM.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not any(loading_info.values()), loading_info  # every parameter came from the GPT-2 checkpoint


def test_command_line_exports_a_llama_preset_checkpoint_that_llama_loads_without_custom_code(tmp_path):
    CustomTransformerForCausalLM(tiny_config("llama")).save_pretrained(tmp_path / "custom")
    main(["--from", str(tmp_path / "custom"), "--to", str(tmp_path / "llama"), "--to-family", "llama"])

    config = AutoConfig.from_pretrained(tmp_path / "llama")
    assert (config.model_type, config.architectures, config.num_key_value_heads) == ("llama", ["LlamaForCausalLM"], 2)
    assert "auto_map" not in config.to_dict() and not (tmp_path / "llama" / "modeling_custom_transformer.py").exists()
    _, loading_info = LlamaForCausalLM.from_pretrained(tmp_path / "llama", output_loading_info=True)
    assert not any(loading_info.values()), loading_info


def test_conversion_keeps_the_dtype_of_the_checkpoint(tmp_path):
    GPT2LMHeadModel(tiny_reference_config("gpt2")).to(torch.bfloat16).save_pretrained(tmp_path / "gpt2")
    convert(tmp_path / "gpt2", tmp_path / "out")
    converted = CustomTransformerForCausalLM.from_pretrained(tmp_path / "out")
    assert {parameter.dtype for parameter in converted.parameters()} == {torch.bfloat16}


UNSUPPORTED_SOURCES = {
    "gpt2-layer-scaled-attention": (
        ("gpt2", "GPT2LMHeadModel", {"scale_attn_by_inverse_layer_idx": True}),
        "Cannot convert this gpt2 checkpoint to custom_transformer: scale_attn_by_inverse_layer_idx=True is not "
        "supported (attention scores are not scaled by layer depth). Supported: scale_attn_by_inverse_layer_idx=False.",
    ),
    "gpt2-reordered-upcast-attention": (
        ("gpt2", "GPT2LMHeadModel", {"reorder_and_upcast_attn": True}),
        "reorder_and_upcast_attn=True is not supported (attention runs in the precision of the configured kernel). "
        "Supported: reorder_and_upcast_attn=False.",
    ),
    "gpt2-unscaled-attention": (
        ("gpt2", "GPT2LMHeadModel", {"scale_attn_weights": False}),
        "scale_attn_weights=False is not supported (attention scores are always scaled by 1/sqrt(head_dim)). "
        "Supported: scale_attn_weights=True.",
    ),
    "gpt2-cross-attention": (
        ("gpt2", "GPT2LMHeadModel", {"add_cross_attention": True}),
        "add_cross_attention=True is not supported (the model has no cross-attention).",
    ),
    "gpt2-double-heads": (
        ("gpt2", "GPT2DoubleHeadsModel", {}),
        "architecture 'GPT2DoubleHeadsModel' is not supported. Supported architectures: GPT2LMHeadModel, GPT2Model, "
        "GPT2ForSequenceClassification, GPT2ForTokenClassification, GPT2ForQuestionAnswering.",
    ),
    "bert-relative-positions": (
        ("bert", "BertForMaskedLM", {"position_embedding_type": "relative_key"}),
        "Cannot convert this bert checkpoint to custom_transformer: position_embedding_type='relative_key' is not "
        "supported (positions are learned absolute embeddings). Supported: position_embedding_type='absolute'.",
    ),
    "bert-decoder": (
        ("bert", "BertLMHeadModel", {"is_decoder": True}),
        "is_decoder=True is not supported (BERT converts as a bidirectional encoder). Supported: is_decoder=False.",
    ),
}


@pytest.mark.parametrize(("source", "message"), UNSUPPORTED_SOURCES.values(), ids=UNSUPPORTED_SOURCES)
def test_unsupported_source_is_refused_naming_the_setting_and_what_is_supported(tmp_path, source, message):
    model_type, architecture, overrides = source
    save_reference_config(tmp_path / "source", model_type, architecture, **overrides)
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(tmp_path / "source", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_unknown_model_type_is_refused_naming_the_supported_ones(tmp_path):
    AutoConfig.for_model("opt", architectures=["OPTForCausalLM"]).save_pretrained(tmp_path / "opt")
    message = (
        "Cannot convert model_type='opt': supported model types are 'llama', 'gpt2', 'bert', 'vit', 'marian', 'bart'."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(tmp_path / "opt", tmp_path / "out")


UNEXPORTABLE = {
    "gpt2-preset": (
        ("gpt2", CustomTransformerForCausalLM),
        "Cannot convert this custom_transformer checkpoint to llama: position_embedding_type='learned' is not "
        "supported (Llama uses rotary position embeddings). Supported: position_embedding_type='rope'.",
    ),
    "bert-preset": (
        ("bert", CustomTransformerForSequenceClassification),
        "is_decoder=False is not supported (Llama is a causal decoder). Supported: is_decoder=True.",
    ),
    "llama-classifier": (
        ("llama", CustomTransformerForSequenceClassification),
        "architecture 'CustomTransformerForSequenceClassification' is not supported. "
        "Supported architectures: CustomTransformerForCausalLM, CustomTransformerModel.",
    ),
}


@pytest.mark.parametrize(("source", "message"), UNEXPORTABLE.values(), ids=UNEXPORTABLE)
def test_export_to_llama_is_refused_for_checkpoints_llama_cannot_reproduce(tmp_path, source, message):
    preset, model_class = source
    config = tiny_config(preset, architectures=[model_class.__name__])
    config.save_pretrained(tmp_path / "custom")
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(tmp_path / "custom", tmp_path / "out", to_family="llama")


UNEXPORTABLE_TO_VIT = {
    "rotary-positions": (
        {"position_embedding_type": "rope"},
        "position_embedding_type='rope' is not supported (ViT learns one position per patch). "
        "Supported: position_embedding_type='learned'.",
    ),
    "grouped-query-attention": (
        {"num_key_value_heads": 2},
        "num_key_value_heads=2 is not supported (ViT has no grouped-query attention). Supported: num_key_value_heads=4",
    ),
    "text": ({"input_embedding": "tokens", "vocab_size": 99}, "input_embedding='tokens' is not supported"),
}


@pytest.mark.parametrize(("overrides", "message"), UNEXPORTABLE_TO_VIT.values(), ids=UNEXPORTABLE_TO_VIT)
def test_export_to_vit_is_refused_for_checkpoints_vit_cannot_reproduce(tmp_path, overrides, message):
    architectures = ["CustomTransformerForImageClassification"]
    tiny_config("vit", architectures=architectures, **overrides).save_pretrained(tmp_path / "custom")
    with pytest.raises(ValueError, match=re.escape(message)):
        convert(tmp_path / "custom", tmp_path / "out", to_family="vit")


def test_a_vit_without_attention_biases_is_refused(tmp_path):
    save_reference_config(tmp_path / "vit", "vit", "ViTForImageClassification", qkv_bias=False)
    with pytest.raises(ValueError, match=re.escape("qkv_bias=False is not supported (the attention projections")):
        convert(tmp_path / "vit", tmp_path / "out")


def test_a_custom_checkpoint_asks_for_a_target_family_and_other_checkpoints_cannot_be_exported(tmp_path):
    tiny_config("llama", architectures=["CustomTransformerForCausalLM"]).save_pretrained(tmp_path / "custom")
    with pytest.raises(ValueError, match=re.escape("already a custom_transformer checkpoint. To export it, pass")):
        convert(tmp_path / "custom", tmp_path / "out")
    save_reference_config(tmp_path / "gpt2", "gpt2", "GPT2LMHeadModel")
    with pytest.raises(ValueError, match=re.escape("to_family='llama' converts custom_transformer checkpoints")):
        convert(tmp_path / "gpt2", tmp_path / "out", to_family="llama")


def test_command_line_reports_a_refusal_as_a_one_line_error(tmp_path):
    save_reference_config(tmp_path / "gpt2", "gpt2", "GPT2LMHeadModel", reorder_and_upcast_attn=True)
    with pytest.raises(
        SystemExit, match=r"^error: Cannot convert this gpt2 checkpoint .* reorder_and_upcast_attn=True"
    ):
        main(["--from", str(tmp_path / "gpt2"), "--to", str(tmp_path / "out")])


TORCH_ENCODERS = {
    "pre-ln": (
        {"norm_first": True},
        None,
        "Only post-LN encoders convert: build the layers with norm_first=False and the encoder with norm=None.",
    ),
    "final-norm": ({}, nn.LayerNorm(32), "Only post-LN encoders convert"),
    "silu": ({"activation": nn.functional.silu}, None, "is not supported. Supported: relu, gelu."),
}


@pytest.mark.parametrize(("layer_options", "final_norm", "message"), TORCH_ENCODERS.values(), ids=TORCH_ENCODERS)
def test_torch_encoders_the_2017_architecture_cannot_reproduce_are_refused(layer_options, final_norm, message):
    layer = nn.TransformerEncoderLayer(32, 4, 37, batch_first=True, **layer_options)
    encoder = nn.TransformerEncoder(layer, num_layers=2, norm=final_norm, enable_nested_tensor=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        from_torch_encoder(encoder, nn.Embedding(99, 32))
