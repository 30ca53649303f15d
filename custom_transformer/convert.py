"""Convert checkpoints between transformers' Llama, GPT-2, BERT, ViT, Marian and BART and custom_transformer (and back
to Llama, ViT, Marian and BART).

    python -m custom_transformer.convert --from SRC_DIR --to DST_DIR                     # llama/gpt2/bert/vit/marian/bart -> ours
    python -m custom_transformer.convert --from SRC_DIR --to DST_DIR --to-family llama   # ours -> LlamaForCausalLM
    python -m custom_transformer.convert --from SRC_DIR --to DST_DIR --to-family vit     # ours -> ViTForImageClassification
    python -m custom_transformer.convert --from SRC_DIR --to DST_DIR --to-family marian  # ours -> MarianMTModel (bart alike)

A conversion is data: a config mapping, the settings it cannot represent, and renaming rules for the state
dict. A rule maps a key prefix to a new prefix (`{n}` stands for the layer index), to a tuple of prefixes (the
tensor is a fused projection, split in equal parts along its output dimension) or to `None` (dropped). The
source is loaded with transformers' own class, so legacy key names and tied weights are resolved before
renaming, and GPT-2's `Conv1D` weights are transposed to the `nn.Linear` layout first; a conversion may then adjust
tensors no renaming expresses (BART's two unused position rows, Marian's computed sinusoids). This module is a
package tool: it is not copied into checkpoints and may use transformers' model classes.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from torch import nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoTokenizer,
    BartConfig,
    BartForConditionalGeneration,
    BartModel,
    BertConfig,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    GPT2Config,
    GPT2ForQuestionAnswering,
    GPT2ForSequenceClassification,
    GPT2ForTokenClassification,
    GPT2LMHeadModel,
    GPT2Model,
    HfArgumentParser,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaForTokenClassification,
    LlamaModel,
    MarianConfig,
    MarianModel,
    MarianMTModel,
    PreTrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
    ViTModel,
)
from transformers.initialization import no_init_weights
from transformers.pytorch_utils import Conv1D

from .checkpoint_io import naming_damaged_weights, refuse_untrusted_weights, replacing_directory
from .configuration_custom_transformer import CustomTransformerConfig
from .modeling_custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForConditionalGeneration,
    CustomTransformerForImageClassification,
    CustomTransformerForMaskedLM,
    CustomTransformerForQuestionAnswering,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
    CustomTransformerModel,
    CustomTransformerSeq2SeqModel,
    sinusoidal_table,
)

Target = str | tuple[str, ...] | None  # a prefix, a fused tensor split in parts, or dropped
Rule = tuple[str, Target]
StateDict = dict[str, torch.Tensor]


def unchanged(state_dict: StateDict, config: PreTrainedConfig) -> StateDict:
    return state_dict


@dataclass(frozen=True)
class Head:
    """One architecture pair: the class to load, the class to build, and the keys only this head has."""

    source: type[PreTrainedModel]
    target: type[PreTrainedModel]
    rules: tuple[Rule, ...] = ()
    # Target keys the source lacks because they are zero there (GPT-2's and Llama's bias-free `score`).
    zero_filled: tuple[str, ...] = ()


@dataclass(frozen=True)
class Conversion:
    """How one family's checkpoints become another's."""

    config: Callable[[PreTrainedConfig], PreTrainedConfig]
    # field -> (the only supported value, why): settings the target architecture cannot reproduce.
    required: dict[str, tuple[object, str]]
    rules: tuple[Rule, ...]  # the shared body; each head's own rules are tried first
    heads: tuple[Head, ...]
    # After renaming, with the target's config: what no rule expresses.
    adjust: Callable[[StateDict, PreTrainedConfig], StateDict] = unchanged


# ----------------------------------------------------------------------------------------------------------------
# Config mappings


# Fields with the same name and meaning in every family: labels of classification heads, the initialiser scale,
# and, in the families that read tokens, special tokens and tying.
LABEL_FIELDS = ("initializer_range", "id2label", "label2id", "problem_type")
COMMON_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings", *LABEL_FIELDS)


# Our field -> the family's field with the same meaning. Both directions are read off these tables: a family's
# checkpoint converted to ours (`IMPORTS`), and our config in the family's fields (`EXPORTS`, tests, benchmarks).
LLAMA_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "num_key_value_heads": "num_key_value_heads",
    "head_dim": "head_dim",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "max_position_embeddings": "max_position_embeddings",
    "layer_norm_eps": "rms_norm_eps",
    "rope_parameters": "rope_parameters",
    "attention_bias": "attention_bias",
    "mlp_bias": "mlp_bias",
    "attention_dropout": "attention_dropout",
}
GPT2_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "n_embd",
    "num_hidden_layers": "n_layer",
    "num_attention_heads": "n_head",
    "intermediate_size": "n_inner",  # None in GPT-2 means 4 * n_embd
    "hidden_act": "activation_function",
    "max_position_embeddings": "n_positions",
    "layer_norm_eps": "layer_norm_epsilon",
    "hidden_dropout": "resid_pdrop",
    "attention_dropout": "attn_pdrop",
}
BERT_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "max_position_embeddings": "max_position_embeddings",
    "layer_norm_eps": "layer_norm_eps",
    "type_vocab_size": "type_vocab_size",
    "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "classifier_dropout": "classifier_dropout",
}
VIT_FIELDS = {
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_hidden_layers",
    "num_attention_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "hidden_act": "hidden_act",
    "layer_norm_eps": "layer_norm_eps",
    "hidden_dropout": "hidden_dropout_prob",
    "attention_dropout": "attention_probs_dropout_prob",
    "image_size": "image_size",
    "patch_size": "patch_size",
    "num_channels": "num_channels",
}
# The encoder-decoders (Marian, BART) name each side's shapes; ours has one width, head count and MLP for both.
SEQ2SEQ_FIELDS = {
    "vocab_size": "vocab_size",
    "hidden_size": "d_model",
    "num_hidden_layers": "encoder_layers",
    "decoder_layers": "decoder_layers",
    "num_attention_heads": "encoder_attention_heads",
    "intermediate_size": "encoder_ffn_dim",
    "hidden_act": "activation_function",
    "max_position_embeddings": "max_position_embeddings",
    "hidden_dropout": "dropout",
    "attention_dropout": "attention_dropout",
    "initializer_range": "init_std",
    "scale_embeddings": "scale_embedding",
    "decoder_start_token_id": "decoder_start_token_id",
}
SEQ2SEQ_COMMON_FIELDS = tuple(name for name in COMMON_FIELDS if name != "initializer_range")  # theirs is init_std
MARIAN_FIELDS = {**SEQ2SEQ_FIELDS, "share_encoder_decoder_embeddings": "share_encoder_decoder_embeddings"}
# Their decoder's fields that must equal the encoder's (or the vocabulary), and the field of ours they copy.
DECODER_COPIES = {"decoder_attention_heads": "num_attention_heads", "decoder_ffn_dim": "intermediate_size"}
MARIAN_COPIES = {**DECODER_COPIES, "decoder_vocab_size": "vocab_size"}


def _custom_config(
    preset: str,
    fields: dict[str, str],
    derived: Callable[[PreTrainedConfig], dict] = lambda config: {},
    common_fields: tuple[str, ...] = COMMON_FIELDS,
) -> Callable[[PreTrainedConfig], CustomTransformerConfig]:
    """A family's config -> our preset with its values (`fields`: ours -> theirs; `derived`: ours computed from theirs
    where the family leaves a field implicit)."""

    def build(config: PreTrainedConfig) -> CustomTransformerConfig:
        values = {ours: getattr(config, theirs) for ours, theirs in fields.items()}
        common = {name: getattr(config, name) for name in common_fields}
        return CustomTransformerConfig.from_preset(preset, **common, **{**values, **derived(config)})

    return build


def _reference_config(
    config_class: type[PreTrainedConfig],
    fields: dict[str, str],
    common_fields: tuple[str, ...] = COMMON_FIELDS,
    **copies: str,
) -> Callable[[CustomTransformerConfig], PreTrainedConfig]:
    """Our config -> the family's config with the same shapes (`copies`: more of their fields taken from one of ours;
    the preset's switches are checked by the caller)."""

    def build(config: CustomTransformerConfig) -> PreTrainedConfig:
        values = {theirs: getattr(config, ours) for ours, theirs in fields.items()}
        values.update({theirs: getattr(config, ours) for theirs, ours in copies.items()})
        return config_class(**values, **{name: getattr(config, name) for name in common_fields})

    return build


llama_config_from = _reference_config(LlamaConfig, LLAMA_FIELDS)
gpt2_config_from = _reference_config(GPT2Config, GPT2_FIELDS, embd_pdrop="hidden_dropout")
bert_config_from = _reference_config(BertConfig, BERT_FIELDS)
_vit_config = _reference_config(ViTConfig, VIT_FIELDS, LABEL_FIELDS, qkv_bias="attention_bias", head_dim="head_dim")


def _without_grouped_query_attention(family: str, build: Callable) -> Callable:
    """`build`, refusing configs whose key/value heads are fewer than the query heads (the family has no GQA)."""

    def checked(config: CustomTransformerConfig) -> PreTrainedConfig:
        if config.num_key_value_heads != config.num_attention_heads:
            raise ValueError(
                f"num_key_value_heads={config.num_key_value_heads} is not supported ({family} has no grouped-query "
                f"attention). Supported: num_key_value_heads={config.num_attention_heads} (= num_attention_heads)."
            )
        return build(config)

    return checked


vit_config_from = _without_grouped_query_attention("ViT", _vit_config)
marian_config_from = _without_grouped_query_attention(
    "Marian", _reference_config(MarianConfig, MARIAN_FIELDS, SEQ2SEQ_COMMON_FIELDS, **MARIAN_COPIES)
)
bart_config_from = _without_grouped_query_attention(
    "BART", _reference_config(BartConfig, SEQ2SEQ_FIELDS, SEQ2SEQ_COMMON_FIELDS, **DECODER_COPIES)
)


def _symmetric(build: Callable, copies: dict[str, str]) -> Callable:
    """`build`, refusing an encoder-decoder whose decoder differs from its encoder in a field ours shares."""

    def checked(config: PreTrainedConfig) -> CustomTransformerConfig:
        ours = build(config)
        for theirs, field_of_ours in copies.items():
            if getattr(config, theirs) != getattr(ours, field_of_ours):
                raise ValueError(
                    f"Cannot convert this {config.model_type} checkpoint: {theirs}={getattr(config, theirs)} differs "
                    f"from the encoder's {getattr(ours, field_of_ours)} (custom_transformer's decoder has the encoder's "
                    f"{field_of_ours}). Supported: {theirs}={getattr(ours, field_of_ours)}."
                )
        return ours

    return checked


# ----------------------------------------------------------------------------------------------------------------
# The conversions

LLAMA_RULES: tuple[Rule, ...] = (
    ("model.layers.{n}.input_layernorm.", "model.layers.{n}.attention_norm."),
    ("model.layers.{n}.post_attention_layernorm.", "model.layers.{n}.mlp_norm."),
    ("model.", "model."),  # embed_tokens, self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, norm
    ("lm_head.", "lm_head."),
    ("score.", "score."),
)

GPT2_RULES: tuple[Rule, ...] = (
    ("transformer.wte.", "model.embed_tokens."),
    ("transformer.wpe.", "model.embed_positions."),
    ("transformer.h.{n}.ln_1.", "model.layers.{n}.attention_norm."),
    (
        "transformer.h.{n}.attn.c_attn.",
        (
            "model.layers.{n}.self_attn.q_proj.",
            "model.layers.{n}.self_attn.k_proj.",
            "model.layers.{n}.self_attn.v_proj.",
        ),
    ),
    ("transformer.h.{n}.attn.c_proj.", "model.layers.{n}.self_attn.o_proj."),
    ("transformer.h.{n}.ln_2.", "model.layers.{n}.mlp_norm."),
    ("transformer.h.{n}.mlp.c_fc.", "model.layers.{n}.mlp.up_proj."),
    ("transformer.h.{n}.mlp.c_proj.", "model.layers.{n}.mlp.down_proj."),
    ("transformer.ln_f.", "model.norm."),
    ("lm_head.", "lm_head."),
    ("score.", "score."),
    ("classifier.", "score."),
    ("qa_outputs.", "qa_outputs."),
)

BERT_RULES: tuple[Rule, ...] = (
    ("bert.embeddings.word_embeddings.", "model.embed_tokens."),
    ("bert.embeddings.position_embeddings.", "model.embed_positions."),
    ("bert.embeddings.token_type_embeddings.", "model.embed_token_types."),
    ("bert.embeddings.LayerNorm.", "model.embed_norm."),
    ("bert.encoder.layer.{n}.attention.self.query.", "model.layers.{n}.self_attn.q_proj."),
    ("bert.encoder.layer.{n}.attention.self.key.", "model.layers.{n}.self_attn.k_proj."),
    ("bert.encoder.layer.{n}.attention.self.value.", "model.layers.{n}.self_attn.v_proj."),
    ("bert.encoder.layer.{n}.attention.output.dense.", "model.layers.{n}.self_attn.o_proj."),
    ("bert.encoder.layer.{n}.attention.output.LayerNorm.", "model.layers.{n}.attention_norm."),
    ("bert.encoder.layer.{n}.intermediate.dense.", "model.layers.{n}.mlp.up_proj."),
    ("bert.encoder.layer.{n}.output.dense.", "model.layers.{n}.mlp.down_proj."),
    ("bert.encoder.layer.{n}.output.LayerNorm.", "model.layers.{n}.mlp_norm."),
    ("bert.pooler.dense.", "pooler.dense."),
    ("classifier.", "score."),
    ("qa_outputs.", "qa_outputs."),
)

VIT_RULES: tuple[Rule, ...] = (
    ("vit.embeddings.cls_token", "model.embed_patches.cls_token"),
    ("vit.embeddings.position_embeddings", "model.embed_patches.positions.weight"),
    ("vit.embeddings.patch_embeddings.projection.", "model.embed_patches.projection."),
    ("vit.layers.{n}.layernorm_before.", "model.layers.{n}.attention_norm."),
    ("vit.layers.{n}.attention.", "model.layers.{n}.self_attn."),  # {q,k,v,o}_proj
    ("vit.layers.{n}.layernorm_after.", "model.layers.{n}.mlp_norm."),
    ("vit.layers.{n}.mlp.fc1.", "model.layers.{n}.mlp.up_proj."),
    ("vit.layers.{n}.mlp.fc2.", "model.layers.{n}.mlp.down_proj."),
    ("vit.layernorm.", "model.norm."),
    ("classifier.", "score."),
)


def _seq2seq_layer_rules(side: str) -> tuple[Rule, ...]:
    """BART's and Marian's layer names on one side (`encoder`, `decoder`) -> ours; the decoder's `encoder_attn`
    is our `cross_attn`."""
    theirs = ours = f"model.{side}.layers.{{n}}."
    return (
        (f"{theirs}self_attn.out_proj.", f"{ours}self_attn.o_proj."),
        (f"{theirs}self_attn.", f"{ours}self_attn."),  # {q,k,v}_proj
        (f"{theirs}self_attn_layer_norm.", f"{ours}attention_norm."),
        (f"{theirs}encoder_attn.out_proj.", f"{ours}cross_attn.o_proj."),
        (f"{theirs}encoder_attn.", f"{ours}cross_attn."),
        (f"{theirs}encoder_attn_layer_norm.", f"{ours}cross_attention_norm."),
        (f"{theirs}fc1.", f"{ours}mlp.up_proj."),
        (f"{theirs}fc2.", f"{ours}mlp.down_proj."),
        (f"{theirs}final_layer_norm.", f"{ours}mlp_norm."),
    )


SEQ2SEQ_RULES: tuple[Rule, ...] = (
    ("model.shared.", None),  # the same tensor as the encoder's embed_tokens, which carries it
    ("model.encoder.embed_tokens.", "model.encoder.embed_tokens."),
    ("model.decoder.embed_tokens.", "model.decoder.embed_tokens."),
    *_seq2seq_layer_rules("encoder"),
    *_seq2seq_layer_rules("decoder"),
    ("lm_head.", "lm_head."),
    ("final_logits_bias", "final_logits_bias"),
)
# Marian's sinusoids are computed (and not saved); BART's positions are learned, and it normalises the embeddings.
MARIAN_POSITION_RULES: tuple[Rule, ...] = (("model.{side}.embed_positions.", None),)
BART_EMBEDDING_RULES: tuple[Rule, ...] = (
    ("model.{side}.embed_positions.", "model.{side}.embed_positions."),
    ("model.{side}.layernorm_embedding.", "model.{side}.embed_norm."),
)
SIDES = ("encoder", "decoder")


def _both_sides(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple(
        (source.replace("{side}", side), target.replace("{side}", side) if isinstance(target, str) else target)
        for side in SIDES
        for source, target in rules
    )


# BART offsets every position by 2 (`BartLearnedPositionalEmbedding.offset`): its first two rows are never read.
BART_POSITION_OFFSET = 2


def _drop_bart_offset(state_dict: StateDict, config: PreTrainedConfig) -> StateDict:
    for side in SIDES:
        key = f"model.{side}.embed_positions.weight"
        if key in state_dict:
            state_dict[key] = state_dict[key][BART_POSITION_OFFSET:].contiguous()
    return state_dict


def _with_shared_embedding(state_dict: StateDict) -> StateDict:
    """transformers' encoder-decoders keep the shared matrix as `model.shared` beside both sides' copies of it."""
    if "model.encoder.embed_tokens.weight" in state_dict:
        state_dict.setdefault("model.shared.weight", state_dict["model.encoder.embed_tokens.weight"])
    return state_dict


def _to_bart(state_dict: StateDict, config: PreTrainedConfig) -> StateDict:
    for side in SIDES:
        key = f"model.{side}.embed_positions.weight"
        positions = state_dict[key]
        state_dict[key] = torch.cat((positions.new_zeros(BART_POSITION_OFFSET, positions.shape[1]), positions))
    return _with_shared_embedding(state_dict)


def _to_marian(state_dict: StateDict, config: PreTrainedConfig) -> StateDict:
    """Marian's position tables are parameters that `from_pretrained` computes: a conversion computes them too."""
    table = sinusoidal_table(config.max_position_embeddings, config.d_model, "halves")
    for side in SIDES:
        state_dict[f"model.{side}.embed_positions.weight"] = table.clone()
    return _with_shared_embedding(state_dict)


BERT_MLM_RULES: tuple[Rule, ...] = (
    ("cls.predictions.transform.dense.", "lm_head.dense."),
    ("cls.predictions.transform.LayerNorm.", "lm_head.norm."),
    ("cls.predictions.decoder.", "lm_head.decoder."),
    ("cls.predictions.bias", None),  # the same tensor as cls.predictions.decoder.bias
)

IMPORTS: dict[str, Conversion] = {
    "llama": Conversion(
        config=_custom_config("llama", LLAMA_FIELDS),
        required={},  # GQA, head_dim, attention/MLP biases, tied embeddings and every rope_type map directly
        rules=LLAMA_RULES,
        heads=(
            Head(LlamaForCausalLM, CustomTransformerForCausalLM),
            Head(LlamaModel, CustomTransformerModel),
            Head(
                LlamaForSequenceClassification, CustomTransformerForSequenceClassification, zero_filled=("score.bias",)
            ),
            Head(LlamaForTokenClassification, CustomTransformerForTokenClassification),
        ),
    ),
    "gpt2": Conversion(
        config=_custom_config(
            "gpt2", GPT2_FIELDS, lambda config: {"intermediate_size": config.n_inner or 4 * config.n_embd}
        ),
        required={
            "scale_attn_weights": (True, "attention scores are always scaled by 1/sqrt(head_dim)"),
            "scale_attn_by_inverse_layer_idx": (False, "attention scores are not scaled by layer depth"),
            "reorder_and_upcast_attn": (False, "attention runs in the precision of the configured kernel"),
            "add_cross_attention": (False, "the model has no cross-attention"),
        },
        rules=GPT2_RULES,
        heads=(
            Head(GPT2LMHeadModel, CustomTransformerForCausalLM),
            Head(GPT2Model, CustomTransformerModel),
            Head(
                GPT2ForSequenceClassification, CustomTransformerForSequenceClassification, zero_filled=("score.bias",)
            ),
            Head(GPT2ForTokenClassification, CustomTransformerForTokenClassification),
            Head(GPT2ForQuestionAnswering, CustomTransformerForQuestionAnswering),
        ),
    ),
    "bert": Conversion(
        config=_custom_config("bert", BERT_FIELDS),
        required={
            "position_embedding_type": ("absolute", "positions are learned absolute embeddings"),
            "is_decoder": (False, "BERT converts as a bidirectional encoder"),
            "add_cross_attention": (False, "the model has no cross-attention"),
        },
        rules=BERT_RULES,
        heads=(
            Head(BertForMaskedLM, CustomTransformerForMaskedLM, rules=BERT_MLM_RULES),
            # The bare custom model has no pooler: BertModel's `pooler_output` is not carried over.
            Head(BertModel, CustomTransformerModel, rules=(("bert.pooler.", None),)),
            Head(BertForSequenceClassification, CustomTransformerForSequenceClassification),
            Head(BertForTokenClassification, CustomTransformerForTokenClassification),
            Head(BertForQuestionAnswering, CustomTransformerForQuestionAnswering),
        ),
    ),
    "vit": Conversion(
        config=_custom_config("vit", VIT_FIELDS, common_fields=LABEL_FIELDS),
        required={"qkv_bias": (True, "the attention projections are all biased or none is")},
        rules=VIT_RULES,
        heads=(
            Head(ViTForImageClassification, CustomTransformerForImageClassification),
            # The bare custom model has no pooler: ViTModel's `pooler_output` is not carried over.
            Head(ViTModel, CustomTransformerModel, rules=(("vit.pooler.", None),)),
        ),
    ),
    "marian": Conversion(
        config=_symmetric(_custom_config("marian", MARIAN_FIELDS, common_fields=SEQ2SEQ_COMMON_FIELDS), MARIAN_COPIES),
        required={},
        rules=(*_both_sides(MARIAN_POSITION_RULES), *SEQ2SEQ_RULES),
        heads=(
            Head(MarianMTModel, CustomTransformerForConditionalGeneration),
            Head(MarianModel, CustomTransformerSeq2SeqModel),
        ),
    ),
    "bart": Conversion(
        config=_symmetric(_custom_config("bart", SEQ2SEQ_FIELDS, common_fields=SEQ2SEQ_COMMON_FIELDS), DECODER_COPIES),
        required={},
        rules=(*_both_sides(BART_EMBEDDING_RULES), *SEQ2SEQ_RULES),
        heads=(
            Head(BartForConditionalGeneration, CustomTransformerForConditionalGeneration),
            Head(BartModel, CustomTransformerSeq2SeqModel),
        ),
        adjust=_drop_bart_offset,
    ),
}


def _invert(rules: tuple[Rule, ...]) -> tuple[Rule, ...]:
    return tuple((target, source) for source, target in rules if isinstance(target, str))


# What Marian and BART share: the post-LN encoder-decoder with biased projections and a plain MLP.
SEQ2SEQ_REQUIRED = {
    "is_encoder_decoder": (True, "it is an encoder-decoder"),
    "norm_type": ("layernorm", "it normalises with LayerNorm"),
    "norm_placement": ("post", "it normalises after each sublayer"),
    "mlp_type": ("plain", "its MLP is two linear layers"),
    "attention_bias": (True, "its attention projections have biases"),
    "mlp_bias": (True, "its MLP layers have biases"),
    "type_vocab_size": (0, "it has no token-type embeddings"),
}

EXPORTS: dict[str, Conversion] = {
    "llama": Conversion(
        config=llama_config_from,
        required={
            "is_decoder": (True, "Llama is a causal decoder"),
            "position_embedding_type": ("rope", "Llama uses rotary position embeddings"),
            "norm_type": ("rmsnorm", "Llama normalises with RMSNorm"),
            "norm_placement": ("pre", "Llama normalises before each sublayer"),
            "mlp_type": ("gated", "Llama's MLP is gated (SwiGLU)"),
            "type_vocab_size": (0, "Llama has no token-type embeddings"),
            "scale_embeddings": (False, "Llama does not scale its embeddings"),
            "embedding_norm": (False, "Llama does not normalise its embeddings"),
        },
        rules=_invert(LLAMA_RULES),
        heads=(
            Head(CustomTransformerForCausalLM, LlamaForCausalLM),
            Head(CustomTransformerModel, LlamaModel),
        ),
    ),
    "vit": Conversion(
        config=vit_config_from,
        required={
            "input_embedding": ("patches", "ViT reads images cut into patches"),
            "is_decoder": (False, "ViT's layers attend both ways"),
            "position_embedding_type": ("learned", "ViT learns one position per patch"),
            "norm_type": ("layernorm", "ViT normalises with LayerNorm"),
            "norm_placement": ("pre", "ViT normalises before each sublayer"),
            "mlp_type": ("plain", "ViT's MLP is two linear layers"),
            "attention_bias": (True, "ViT's output projection always has a bias"),
            "mlp_bias": (True, "ViT's MLP layers have biases"),
            "type_vocab_size": (0, "ViT has no token-type embeddings"),
            "scale_embeddings": (False, "ViT does not scale its embeddings"),
            "embedding_norm": (False, "ViT does not normalise its embeddings"),
            "classifier_pooling": ("first", "ViT classifies from the [CLS] vector"),
            "classifier_pooler": (False, "ViT's classifier reads the [CLS] vector directly"),
        },
        rules=_invert(VIT_RULES),
        heads=(Head(CustomTransformerForImageClassification, ViTForImageClassification),),
    ),
    "marian": Conversion(
        config=marian_config_from,
        required={
            **SEQ2SEQ_REQUIRED,
            "position_embedding_type": ("sinusoidal", "Marian's positions are fixed sinusoids"),
            "sinusoid_layout": ("halves", "Marian puts the sines and the cosines in two halves"),
            "embedding_norm": (False, "Marian does not normalise its embeddings"),
        },
        rules=_invert(SEQ2SEQ_RULES),
        heads=(
            Head(CustomTransformerForConditionalGeneration, MarianMTModel),
            Head(CustomTransformerSeq2SeqModel, MarianModel),
        ),
        adjust=_to_marian,
    ),
    "bart": Conversion(
        config=bart_config_from,
        required={
            **SEQ2SEQ_REQUIRED,
            "position_embedding_type": ("learned", "BART learns its positions"),
            "embedding_norm": (True, "BART normalises the embeddings of both sides"),
            "share_encoder_decoder_embeddings": (True, "BART's sides share one embedding matrix"),
        },
        rules=_invert((*_both_sides(BART_EMBEDDING_RULES), *SEQ2SEQ_RULES)),
        heads=(
            Head(CustomTransformerForConditionalGeneration, BartForConditionalGeneration),
            Head(CustomTransformerSeq2SeqModel, BartModel),
        ),
        adjust=_to_bart,
    ),
}

TARGET_FAMILIES = ("custom_transformer", *EXPORTS)


# ----------------------------------------------------------------------------------------------------------------
# Conversion


def convert(source_dir: str | Path, target_dir: str | Path, to_family: str = "custom_transformer") -> PreTrainedModel:
    """Convert the checkpoint in `source_dir` and save it to `target_dir`; returns the converted model.

    `to_family="custom_transformer"` reads Llama, GPT-2, BERT, ViT, Marian and BART checkpoints; `to_family="llama"`
    (`"vit"`, `"marian"`, `"bart"`) exports a custom_transformer checkpoint of that family's switches to
    transformers' class. The output is written beside `target_dir` and
    swapped in at the end (`replacing_directory`): a failure or a kill leaves `target_dir` as it was, or converted.
    """
    if not Path(source_dir).is_dir() and not _is_repo_id(str(source_dir)):  # else the Hub's "Repo id must be..."
        raise ValueError(f"{source_dir} is not a folder: pass the checkpoint folder to convert.")
    if Path(target_dir).exists() and not Path(target_dir).is_dir():
        raise ValueError(f"{target_dir} exists and is not a folder: pass a folder to write the checkpoint to.")
    config = AutoConfig.from_pretrained(source_dir)
    conversion = _conversion(config.model_type, to_family)
    description = f"this {config.model_type} checkpoint to {to_family}"
    target_config = _config(conversion, config, description)
    head = _head(conversion, config, description)
    source = _load_source(head.source, source_dir)
    state_dict = conversion.adjust(rename(_linear_state_dict(source), head.rules + conversion.rules), target_config)
    target = _build(head.target, target_config, state_dict, head.zero_filled).to(source.dtype)
    if target.can_generate() and source.can_generate():
        target.generation_config = source.generation_config
    with replacing_directory(target_dir) as staging:
        target.save_pretrained(staging)
        _save_processors(source_dir, staging)
    return target


def _load_source(model_class: type[PreTrainedModel], source_dir: str | Path) -> PreTrainedModel:
    """The source model, refused when its weights are damaged rather than converted with random tensors in it.

    `from_pretrained` fills a tensor the file lacks (one flipped byte in its name is enough) with random values
    and only logs it; safetensors reports a truncated file without naming it.
    """
    with naming_damaged_weights(source_dir):
        source, loading_info = model_class.from_pretrained(source_dir, output_loading_info=True)
    refuse_untrusted_weights(source, loading_info, source_dir)
    return source


def _is_repo_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


# What prepares a checkpoint's inputs: the file that marks it, and the Auto class that loads and re-saves it.
PROCESSORS = (("tokenizer_config.json", AutoTokenizer), ("preprocessor_config.json", AutoImageProcessor))


def _save_processors(source_dir: str | Path, target_dir: str | Path):
    """Re-save the source's tokenizer or image processor next to the converted weights, so the folder stays usable
    as it was. transformers knows which files each kind needs; a folder saved without one has none to copy."""
    for marker, auto_class in PROCESSORS:
        if (Path(source_dir) / marker).is_file():
            auto_class.from_pretrained(source_dir).save_pretrained(target_dir)


def _conversion(model_type: str, to_family: str) -> Conversion:
    if to_family not in TARGET_FAMILIES:
        raise ValueError(f"to_family={to_family!r} is not supported. Choose one of: {', '.join(TARGET_FAMILIES)}.")
    if to_family != "custom_transformer" and model_type != CustomTransformerConfig.model_type:
        raise ValueError(
            f"to_family={to_family!r} converts custom_transformer checkpoints, not model_type={model_type!r} ones."
        )
    if to_family in EXPORTS:
        return EXPORTS[to_family]
    if model_type == CustomTransformerConfig.model_type:
        raise ValueError(
            "This is already a custom_transformer checkpoint. To export it, pass to_family (--to-family) "
            f"one of: {', '.join(EXPORTS)}."
        )
    if model_type not in IMPORTS:
        raise ValueError(
            f"Cannot convert model_type={model_type!r}: supported model types are {', '.join(map(repr, IMPORTS))}."
        )
    return IMPORTS[model_type]


def _config(conversion: Conversion, config: PreTrainedConfig, description: str) -> PreTrainedConfig:
    for name, (supported, why) in conversion.required.items():
        value = getattr(config, name, supported)
        if value != supported:
            raise ValueError(
                f"Cannot convert {description}: {name}={value!r} is not supported ({why}). "
                f"Supported: {name}={supported!r}."
            )
    return conversion.config(config)


def _head(conversion: Conversion, config: PreTrainedConfig, description: str) -> Head:
    heads = {head.source.__name__: head for head in conversion.heads}
    architecture = (config.architectures or [None])[0]
    if architecture not in heads:
        raise ValueError(
            f"Cannot convert {description}: architecture {architecture!r} is not supported. "
            f"Supported architectures: {', '.join(heads)}."
        )
    return heads[architecture]


def _linear_state_dict(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The state dict with `nn.Linear` weight layout and the keys a head would have (`bert.`, `transformer.`...).

    GPT-2's `Conv1D` stores weights as (in, out), the transpose of `nn.Linear`.
    """
    state_dict = model.state_dict()
    for name, module in model.named_modules():
        if isinstance(module, Conv1D):
            state_dict[f"{name}.weight"] = state_dict[f"{name}.weight"].t()
    if model.base_model is model:  # a bare model: its keys lack the prefix the rules are written with
        state_dict = {f"{model.base_model_prefix}.{key}": tensor for key, tensor in state_dict.items()}
    return state_dict


def _compile(pattern: str) -> re.Pattern:
    return re.compile(r"(\d+)".join(map(re.escape, pattern.split("{n}"))))


def rename(state_dict: dict[str, torch.Tensor], rules: tuple[Rule, ...]) -> dict[str, torch.Tensor]:
    """Apply renaming rules: the first rule whose prefix matches a key decides; unmatched keys are an error."""
    compiled = [(_compile(source), target) for source, target in rules]
    renamed = {}
    for key, tensor in state_dict.items():
        match, target = _first_rule(key, compiled)
        if target is None:
            continue
        layer, rest = (match.group(1) if match.groups() else ""), key[match.end() :]
        targets = (target,) if isinstance(target, str) else target
        for name, part in zip(targets, tensor.chunk(len(targets), dim=0), strict=True):
            renamed[name.replace("{n}", layer) + rest] = part.contiguous()
    return renamed


def _first_rule(key: str, compiled: list[tuple[re.Pattern, Target]]) -> tuple[re.Match, Target]:
    for pattern, target in compiled:
        if match := pattern.match(key):
            return match, target
    raise ValueError(f"No conversion rule for parameter {key!r}.")


def _build(
    model_class: type[PreTrainedModel],
    config: PreTrainedConfig,
    state_dict: dict[str, torch.Tensor],
    zero_filled: tuple[str, ...] = (),
) -> PreTrainedModel:
    """A `model_class` holding exactly `state_dict`: a missing or unexpected key is an error, not a silent init."""
    with no_init_weights():  # every parameter is overwritten below
        model = model_class(config)
    if model.base_model is model:  # a bare model: its keys lack the prefix the rules are written with
        state_dict = {key.removeprefix(f"{model.base_model_prefix}."): tensor for key, tensor in state_dict.items()}
    expected = model.state_dict()
    zero_patterns = [_compile(pattern) for pattern in zero_filled]
    for key in expected.keys() - state_dict.keys():
        if any(pattern.fullmatch(key) for pattern in zero_patterns):
            state_dict[key] = torch.zeros_like(expected[key])
    model.load_state_dict(state_dict, strict=True)
    model.tie_weights()  # no_init_weights also skipped the tying done at construction
    return model.eval()


# ----------------------------------------------------------------------------------------------------------------
# torch.nn.TransformerEncoder (the 2017 post-LN encoder)

TORCH_ENCODER_RULES: tuple[Rule, ...] = (
    (
        "layers.{n}.self_attn.in_proj_",
        ("layers.{n}.self_attn.q_proj.", "layers.{n}.self_attn.k_proj.", "layers.{n}.self_attn.v_proj."),
    ),
    ("layers.{n}.self_attn.out_proj.", "layers.{n}.self_attn.o_proj."),
    ("layers.{n}.linear1.", "layers.{n}.mlp.up_proj."),
    ("layers.{n}.linear2.", "layers.{n}.mlp.down_proj."),
    ("layers.{n}.norm1.", "layers.{n}.attention_norm."),
    ("layers.{n}.norm2.", "layers.{n}.mlp_norm."),
)
TORCH_ACTIVATIONS = {nn.functional.relu: "relu", nn.functional.gelu: "gelu"}


def from_torch_encoder(encoder: nn.TransformerEncoder, embedding: nn.Embedding, **overrides) -> CustomTransformerModel:
    """A vaswani-preset `CustomTransformerModel` computing what `encoder(embedding(ids) * sqrt(d) + PE)` computes.

    The encoder must be post-LN (`norm_first=False`) without a final norm; the model takes batch-first input
    and `attention_mask` (1 = token) where torch takes `src_key_padding_mask` (True = padding).
    """
    layer = encoder.layers[0]
    if layer.norm_first or encoder.norm is not None:
        raise ValueError(
            "Only post-LN encoders convert: build the layers with norm_first=False and the encoder with norm=None."
        )
    if layer.activation not in TORCH_ACTIVATIONS:
        raise ValueError(
            f"activation={layer.activation!r} is not supported. Supported: {', '.join(TORCH_ACTIVATIONS.values())}."
        )
    attention = layer.self_attn
    config = CustomTransformerConfig.from_preset(
        "vaswani",
        **{
            "is_encoder_decoder": False,  # the preset's encoder alone
            "vocab_size": embedding.num_embeddings,
            "hidden_size": attention.embed_dim,
            "num_hidden_layers": len(encoder.layers),
            "num_attention_heads": attention.num_heads,
            "intermediate_size": layer.linear1.out_features,
            "hidden_act": TORCH_ACTIVATIONS[layer.activation],
            "layer_norm_eps": layer.norm1.eps,
            "attention_bias": attention.in_proj_bias is not None,
            "mlp_bias": layer.linear1.bias is not None,
            "hidden_dropout": layer.dropout.p,
            "attention_dropout": attention.dropout,
            "pad_token_id": embedding.padding_idx,
            **overrides,
        },
    )
    state_dict = {"embed_tokens.weight": embedding.weight.detach(), **rename(encoder.state_dict(), TORCH_ENCODER_RULES)}
    # torch's bias=False also drops the LayerNorm biases, which are zero in our always-biased LayerNorm.
    return _build(
        CustomTransformerModel,
        config,
        state_dict,
        zero_filled=("layers.{n}.attention_norm.bias", "layers.{n}.mlp_norm.bias"),
    )


# ----------------------------------------------------------------------------------------------------------------
# Command line


@dataclass
class ConvertArguments:
    source: str = field(metadata={"aliases": ["--from"], "help": "Checkpoint folder to convert."})
    target: str = field(metadata={"aliases": ["--to"], "help": "Folder to write the converted checkpoint to."})
    to_family: Literal[TARGET_FAMILIES] = field(
        default="custom_transformer",
        metadata={
            "help": f"custom_transformer reads {'/'.join(IMPORTS)}; {'/'.join(EXPORTS)} exports a checkpoint of that "
            "preset to transformers' class."
        },
    )


def main(argv: list[str] | None = None) -> None:
    (args,) = HfArgumentParser(ConvertArguments).parse_args_into_dataclasses(args=argv)
    try:
        model = convert(args.source, args.target, args.to_family)
    except (ValueError, OSError) as error:  # an unsupported setting, a folder that is not a checkpoint, no space
        raise SystemExit(f"error: {' '.join(str(error).split())}") from None  # one line: transformers' span several
    print(f"Wrote {type(model).__name__} to {args.target}")


if __name__ == "__main__":
    main()
