"""One configurable Transformer: BERT, GPT-2, Llama, the 2017 encoder-decoder (Marian, BART) and ViT are configurations.

Every architectural switch of `CustomTransformerConfig` is one row of a small table (`NORMS`, `MLPS`,
`POSITION_SCHEMES`, `SINUSOID_LAYOUTS`, `NORM_PLACEMENTS`, `TOKEN_TYPES`, `STACKS`, `INPUT_EMBEDDINGS`, `POOLINGS`), looked up once
in `__init__`, so each `forward` below reads top to bottom without branching on the config. The structure follows
transformers' Llama: attention through `ALL_ATTENTION_FUNCTIONS`, `Cache` objects, masks from `masking_utils`,
outputs recorded with hooks. This file and its relative imports are copied into every checkpoint, so it only
uses transformers APIs that exist from 5.0 on (`transformers_compat.py` holds the few that moved).
"""

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPast,
    BaseModelOutputWithPastAndCrossAttentions,
    CausalLMOutputWithPast,
    ImageClassifierOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, is_torchdynamo_compiling

from .checkpoint_io import (
    is_writing_rank,
    naming_damaged_weights,
    refuse_untrusted_weights,
    replaceable_in_one_step,
    replacing_directory,
)
from .configuration_custom_transformer import CustomTransformerConfig, image_pair
from .pipeline_custom_transformer import custom_pipelines
from .transformers_compat import (
    ALL_ATTENTION_FUNCTIONS,
    CACHE_FIELD,
    CACHE_KWARG,
    CACHE_NAMES,
    NEEDS_CACHE_POSITION,
    bidirectional_mask,
    causal_mask,
    cross_attention_mask,
    pop_cache,
    record_outputs,
    slice_logits_to_keep,
    tie_heads_left_on_meta,
    update_cache,
)

# ----------------------------------------------------------------------------------------------------------------
# Normalisation


class CustomTransformerRMSNorm(nn.Module):
    """Root-mean-square norm (Llama): no mean subtraction, no bias, computed in float32."""

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)

    def extra_repr(self) -> str:
        return f"{tuple(self.weight.shape)}, eps={self.variance_epsilon}"


NORMS = {"rmsnorm": CustomTransformerRMSNorm, "layernorm": nn.LayerNorm}


def build_norm(config: CustomTransformerConfig) -> nn.Module:
    return NORMS[config.norm_type](config.hidden_size, eps=config.layer_norm_eps)


# ----------------------------------------------------------------------------------------------------------------
# Positions: absolute embeddings added to the input, or rotary embeddings applied inside attention


class NoEmbedding(nn.Module):
    """A disabled additive embedding (no absolute positions, no token types): the input passes through."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()

    def forward(self, hidden_states: torch.Tensor, ids: torch.Tensor | None) -> torch.Tensor:
        return hidden_states


class LearnedPositionEmbedding(nn.Embedding):
    """Trained absolute positions (BERT, GPT-2), added to the input embeddings."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config.max_position_embeddings, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return hidden_states + super().forward(position_ids)


def interleaved(angles: torch.Tensor) -> torch.Tensor:
    """sin on even columns, cos on odd ones: the paper's PE(pos, 2i) and PE(pos, 2i+1)."""
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def halves(angles: torch.Tensor) -> torch.Tensor:
    """All the sines, then all the cosines (Marian, fairseq, tensor2tensor)."""
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


SINUSOID_LAYOUTS = {"interleaved": interleaved, "halves": halves}


def sinusoidal_table(num_positions: int, dim: int, layout: str = "interleaved") -> torch.Tensor:
    """sin and cos of pos / 10000^(2i/d) (Vaswani et al. 2017, 3.5), in float64 as Marian computes them (numpy)."""
    position = torch.arange(num_positions, dtype=torch.float64).unsqueeze(1)
    angles = position / 10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return SINUSOID_LAYOUTS[layout](angles).float()


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed sinusoidal positions (2017 Transformer), added to the input embeddings.

    The table is a non-persistent buffer: it is not saved, and `_init_weights` rebuilds it, because
    `from_pretrained` creates the model on the meta device where buffers made in `__init__` are lost.
    """

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.num_positions, self.dim, self.layout = (
            config.max_position_embeddings,
            config.hidden_size,
            config.sinusoid_layout,
        )
        self.register_buffer("table", sinusoidal_table(self.num_positions, self.dim, self.layout), persistent=False)

    def forward(self, hidden_states: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return hidden_states + self.table[position_ids].to(hidden_states.dtype)


class TokenTypeEmbedding(nn.Embedding):
    """Segment embeddings (BERT), added to the input embeddings; with no `token_type_ids` every token is of type 0."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config.type_vocab_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        return hidden_states + (self.weight[0] if token_type_ids is None else super().forward(token_type_ids))


TOKEN_TYPES = {True: TokenTypeEmbedding, False: NoEmbedding}  # keyed by `type_vocab_size > 0`


class CustomTransformerRotaryEmbedding(nn.Module):
    """cos/sin tables for rotary position embeddings; variants come from transformers' `ROPE_INIT_FUNCTIONS`."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.config = config
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        self.rope_type = config.rope_parameters.get("rope_type", "default")
        inv_freq, self.attention_scaling = self.compute_inv_freq()
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    def compute_inv_freq(self) -> tuple[torch.Tensor, float]:
        if self.rope_type != "default":
            return ROPE_INIT_FUNCTIONS[self.rope_type](self.config, None)
        return self.compute_default_rope_parameters(self.config)

    @staticmethod
    def compute_default_rope_parameters(config: CustomTransformerConfig, *args, **kwargs) -> tuple[torch.Tensor, float]:
        base, dim = config.rope_parameters["rope_theta"], config.head_dim
        return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)), 1.0

    @torch.no_grad()
    @dynamic_rope_update  # grows/shrinks the frequencies for "dynamic" and "longrope" scaling
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float32)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


class NoRotaryEmbedding(nn.Module):
    """Absolute-position and position-free models rotate nothing."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> None:
        return None


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(query, key, position_embeddings):
    cos, sin = (t.unsqueeze(1) for t in position_embeddings)  # broadcast over heads
    return (query * cos) + (rotate_half(query) * sin), (key * cos) + (rotate_half(key) * sin)


def keep_positions(query, key, position_embeddings):
    """Attention for absolute-position models: queries and keys are used as they are."""
    return query, key


@dataclass(frozen=True)
class PositionScheme:
    """Where a position scheme acts: added to the input embeddings, or rotated into queries and keys."""

    absolute: type[nn.Module]  # adds absolute positions to the input embeddings
    rotary: type[nn.Module]  # computes the cos/sin tables once per forward
    rotate: Callable  # applies them to queries and keys inside attention


POSITION_SCHEMES = {
    "learned": PositionScheme(LearnedPositionEmbedding, NoRotaryEmbedding, keep_positions),
    "sinusoidal": PositionScheme(SinusoidalPositionEmbedding, NoRotaryEmbedding, keep_positions),
    "rope": PositionScheme(NoEmbedding, CustomTransformerRotaryEmbedding, apply_rotary_pos_emb),
    "none": PositionScheme(NoEmbedding, NoRotaryEmbedding, keep_positions),
}


# ----------------------------------------------------------------------------------------------------------------
# Attention, MLP, layers


class ScaledInitLinear(nn.Linear):
    """An output projection initialised at std / sqrt(2 * layers) (GPT-2's `scale_residual_init`).

    Each layer adds two sublayer outputs to the residual stream; scaling their projections keeps the stream's
    variance from growing with depth at the start of training.
    """


OUTPUT_PROJECTIONS = {False: nn.Linear, True: ScaledInitLinear}  # keyed by `scale_residual_init`


def repeat_kv(hidden_states: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(batch, kv_heads, seq, dim) -> (batch, kv_heads * n_rep, seq, dim) for grouped-query attention."""
    batch, num_key_value_heads, seq_len, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_key_value_heads, n_rep, seq_len, head_dim)
    return hidden_states.reshape(batch, num_key_value_heads * n_rep, seq_len, head_dim)


def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    key_states = repeat_kv(key, module.num_key_value_groups)
    value_states = repeat_kv(value, module.num_key_value_groups)
    attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask[:, :, :, : key_states.shape[-2]]
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value_states).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class MultiHeadAttention(nn.Module):
    """Query, key, value and output projections with optional grouped key/value heads, and the attention kernel
    (`config._attn_implementation`) between them: what self-attention and cross-attention share."""

    def __init__(self, config: CustomTransformerConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        self.is_causal = is_causal  # read by the sdpa / flash kernels when no mask is built
        bias = config.attention_bias
        self.q_proj = nn.Linear(config.hidden_size, config.num_attention_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, config.num_key_value_heads * self.head_dim, bias=bias)
        output_projection = OUTPUT_PROJECTIONS[config.scale_residual_init]
        self.o_proj = output_projection(config.num_attention_heads * self.head_dim, config.hidden_size, bias=bias)

    def heads(self, projection: nn.Linear, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, seq, hidden) -> (batch, heads, seq, head_dim); -1 heads is correct under tensor parallelism too."""
        return projection(hidden_states).view(*hidden_states.shape[:-1], -1, self.head_dim).transpose(1, 2)

    def attend(self, query, key, value, attention_mask, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
        # `set_attn_implementation` switches kernels only in files that contain this call (5.1+) or, for 5.0,
        # `ALL_ATTENTION_FUNCTIONS[self.config._attn_implementation]`: transformers searches the source text.
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        attn_output, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        attn_output = self.o_proj(attn_output.reshape(*attn_output.shape[:2], -1).contiguous())
        return attn_output, attn_weights


class CustomTransformerAttention(MultiHeadAttention):
    """Self-attention: causal in decoders, bidirectional in encoders, rotary positions applied where configured."""

    def __init__(self, config: CustomTransformerConfig, layer_idx: int, is_causal: bool):
        super().__init__(config, layer_idx, is_causal)
        self.rotate = POSITION_SCHEMES[config.position_embedding_type].rotate

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache_position: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        cache = kwargs.pop(CACHE_KWARG, None)  # under the name gradient checkpointing clears
        query, key = self.heads(self.q_proj, hidden_states), self.heads(self.k_proj, hidden_states)
        value = self.heads(self.v_proj, hidden_states)
        query, key = self.rotate(query, key, position_embeddings)
        if cache is not None:
            key, value = update_cache(cache, key, value, self.layer_idx, cache_position, kwargs)
        return self.attend(query, key, value, attention_mask, **kwargs)


class CustomTransformerCrossAttention(MultiHeadAttention):
    """The decoder's attention to the encoder's output (encoder-decoders): queries from the decoder, keys and values
    from the encoder, projected once per source and then read back from the cross-attention half of the cache."""

    def __init__(self, config: CustomTransformerConfig, layer_idx: int):
        super().__init__(config, layer_idx, is_causal=False)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        query = self.heads(self.q_proj, hidden_states)
        if cache is not None and cache.is_updated.get(self.layer_idx):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            key, value = layer.keys, layer.values
        else:
            key, value = self.heads(self.k_proj, encoder_hidden_states), self.heads(self.v_proj, encoder_hidden_states)
            if cache is not None:
                key, value = update_cache(cache.cross_attention_cache, key, value, self.layer_idx, None, kwargs)
                cache.is_updated[self.layer_idx] = True
        return self.attend(query, key, value, attention_mask, **kwargs)


class Activation(nn.Module):
    """`ACT2FN[name]` held outside the module tree, where `kernelize` cannot see it.

    transformers 5.25 kernelizes every model on load when the `kernels` package is installed, and its activation
    classes are hub-kernel layers: on GPUs they would be swapped for kernels downloaded at load time, so the
    numbers (and whether loading needs the network) would depend on an optional package. This module computes
    exactly transformers' activation and carries nothing `kernelize` replaces.
    """

    def __init__(self, name: str):
        super().__init__()
        self.__dict__["function"] = ACT2FN[name]  # a plain attribute, not a submodule
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    def extra_repr(self) -> str:
        return self.name


def activation(config: CustomTransformerConfig) -> nn.Module:
    """transformers' activation module itself with `hub_kernels=True` (Hub kernels may replace it), else ours."""
    return ACT2FN[config.hidden_act] if config.hub_kernels else Activation(config.hidden_act)


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)): SwiGLU when `hidden_act="silu"` (Llama)."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = OUTPUT_PROJECTIONS[config.scale_residual_init](
            config.intermediate_size, config.hidden_size, bias=config.mlp_bias
        )
        self.act_fn = activation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


class PlainMLP(nn.Module):
    """down(act(up(x))): the position-wise feed-forward of BERT, GPT-2 and the 2017 Transformer."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = OUTPUT_PROJECTIONS[config.scale_residual_init](
            config.intermediate_size, config.hidden_size, bias=config.mlp_bias
        )
        self.act_fn = activation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.up_proj(x)))


MLPS = {"gated": GatedMLP, "plain": PlainMLP}


def pre_norm(x: torch.Tensor, sublayer: Callable, norm: nn.Module, dropout: nn.Module) -> torch.Tensor:
    """x + f(norm(x)) (GPT-2, Llama): the residual stream is never normalised, which keeps deep stacks stable."""
    return x + dropout(sublayer(norm(x)))


def post_norm(x: torch.Tensor, sublayer: Callable, norm: nn.Module, dropout: nn.Module) -> torch.Tensor:
    """norm(x + f(x)) (2017 Transformer, BERT)."""
    return norm(x + dropout(sublayer(x)))


def no_norm(config: CustomTransformerConfig) -> nn.Module:
    return nn.Identity()


@dataclass(frozen=True)
class NormPlacement:
    residual: Callable  # how a sublayer, its norm and the residual connection combine
    final_norm: Callable[[CustomTransformerConfig], nn.Module]  # after the last layer


# Pre-norm stacks end with a norm (GPT-2's ln_f, Llama's norm); post-norm stacks are already normalised.
NORM_PLACEMENTS = {"pre": NormPlacement(pre_norm, build_norm), "post": NormPlacement(post_norm, no_norm)}


class CustomTransformerLayer(GradientCheckpointingLayer):
    """Self-attention then MLP, each with a residual connection and a norm placed by `config.norm_placement`:

    pre  (GPT-2, Llama):  x = x + attn(attention_norm(x));   x = x + mlp(mlp_norm(x))   (+ a final norm)
    post (2017, BERT):    x = attention_norm(x + attn(x));   x = mlp_norm(x + mlp(x))
    """

    def __init__(self, config: CustomTransformerConfig, layer_idx: int, is_causal: bool):
        super().__init__()
        self.self_attn = CustomTransformerAttention(config, layer_idx, is_causal)
        self.mlp = MLPS[config.mlp_type](config)
        self.attention_norm = build_norm(config)
        self.mlp_norm = build_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.residual = NORM_PLACEMENTS[config.norm_placement].residual

    def forward(self, hidden_states: torch.Tensor, **kwargs: Unpack[TransformersKwargs]) -> torch.Tensor:
        attend = lambda x: self.self_attn(x, **kwargs)[0]  # noqa: E731 - the weights are recorded by a hook
        hidden_states = self.residual(hidden_states, attend, self.attention_norm, self.dropout)
        return self.residual(hidden_states, self.mlp, self.mlp_norm, self.dropout)


class CustomTransformerDecoderLayer(CustomTransformerLayer):
    """A decoder layer of an encoder-decoder: causal self-attention, then attention to the encoder's output, then
    the MLP, each with its residual connection and norm placed as in `CustomTransformerLayer` (Marian, BART)."""

    def __init__(self, config: CustomTransformerConfig, layer_idx: int, is_causal: bool):
        super().__init__(config, layer_idx, is_causal)
        self.cross_attn = CustomTransformerCrossAttention(config, layer_idx)
        self.cross_attention_norm = build_norm(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,  # positional, so gradient checkpointing passes its gradient
        encoder_attention_mask: torch.Tensor | None = None,
        encoder_decoder_cache: EncoderDecoderCache | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attend = lambda x: self.self_attn(x, **kwargs)[0]  # noqa: E731 - the weights are recorded by a hook
        hidden_states = self.residual(hidden_states, attend, self.attention_norm, self.dropout)
        read_encoder = lambda x: self.cross_attn(  # noqa: E731
            x, encoder_hidden_states, encoder_attention_mask, encoder_decoder_cache
        )[0]
        hidden_states = self.residual(hidden_states, read_encoder, self.cross_attention_norm, self.dropout)
        return self.residual(hidden_states, self.mlp, self.mlp_norm, self.dropout)


def split_cache(cache: Cache | None) -> tuple[Cache | None, EncoderDecoderCache | None]:
    """The self-attention cache, and the cache holding the encoder's keys and values if there is one."""
    if isinstance(cache, EncoderDecoderCache):
        return cache.self_attention_cache, cache
    return cache, None


def no_cache(config: CustomTransformerConfig) -> None:
    return None


def dynamic_cache(config: CustomTransformerConfig) -> Cache:
    return DynamicCache(config=config)


def encoder_decoder_cache(config: CustomTransformerConfig) -> Cache:
    return EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))


def no_encoder(config, inputs_embeds, encoder_hidden_states, encoder_attention_mask, cache) -> tuple[tuple, dict]:
    if encoder_hidden_states is not None:
        raise ValueError(
            "encoder_hidden_states were given to a stack without cross-attention: only the decoder of an "
            "encoder-decoder (is_encoder_decoder=True) reads an encoder's output."
        )
    return (), {}


def read_encoder(config, inputs_embeds, encoder_hidden_states, encoder_attention_mask, cache) -> tuple[tuple, dict]:
    """What each decoder layer of an encoder-decoder needs to attend to the encoder: its states, mask and cache."""
    if encoder_hidden_states is None:
        raise ValueError(
            "The decoder of an encoder-decoder attends to the encoder's output: pass encoder_hidden_states, or call "
            "the whole model (CustomTransformerSeq2SeqModel or ...ForConditionalGeneration), which runs the encoder."
        )
    mask = cross_attention_mask(config, inputs_embeds, encoder_attention_mask, encoder_hidden_states)
    return (encoder_hidden_states,), {"encoder_attention_mask": mask, "encoder_decoder_cache": cache}


def encoder_depth(config: CustomTransformerConfig) -> int:
    return config.num_hidden_layers


def decoder_depth(config: CustomTransformerConfig) -> int:
    return config.decoder_layers


@dataclass(frozen=True)
class Stack:
    """How a stack of layers attends: the mask its layers get, whether kernels may assume a causal one, its layers
    and how many, the cache `use_cache` starts, and what else its layers read (an encoder's output)."""

    build_mask: Callable
    is_causal: bool
    new_cache: Callable[[CustomTransformerConfig], Cache | None]
    layer: type[CustomTransformerLayer] = CustomTransformerLayer
    depth: Callable[[CustomTransformerConfig], int] = encoder_depth
    cross_inputs: Callable = no_encoder
    output: type = BaseModelOutputWithPast


# Keyed by `config.stack`; an encoder-decoder is two stacks, "encoder" and "seq2seq-decoder".
STACKS = {
    "decoder": Stack(causal_mask, is_causal=True, new_cache=dynamic_cache),
    "encoder": Stack(bidirectional_mask, is_causal=False, new_cache=no_cache),  # nothing to reuse: it reads all at once
    "seq2seq-decoder": Stack(
        causal_mask,
        is_causal=True,
        new_cache=encoder_decoder_cache,
        layer=CustomTransformerDecoderLayer,
        depth=decoder_depth,
        cross_inputs=read_encoder,
        output=BaseModelOutputWithPastAndCrossAttentions,
    ),
}


# ----------------------------------------------------------------------------------------------------------------
# Input embeddings: what the model reads, turned into one vector per position


class TokenEmbedding(nn.Embedding):
    """Token ids -> vectors, naming the ids and `vocab_size` when an id has no row.

    torch says only "index out of range in self" (a device-side assert on GPUs). On CPU the ids are checked with
    one aminmax and an exact message; on accelerators with an asynchronous assert, so no step (decoding included)
    waits for the device. Skipped while compiling, exporting or tracing, where a check would break the graph.
    """

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if not (is_torchdynamo_compiling() or torch.jit.is_tracing() or input_ids.is_meta or input_ids.numel() == 0):
            self.check(input_ids)
        return super().forward(input_ids)

    def check(self, input_ids: torch.Tensor) -> None:
        vocab_size = self.num_embeddings
        fix = (
            f"every id must be in [0, {vocab_size - 1}]. Use the tokenizer the model was trained with (len(tokenizer) "
            "must not exceed config.vocab_size, or call model.resize_token_embeddings(len(tokenizer))), and keep "
            "label values such as -100 out of input_ids."
        )
        low, high = torch.aminmax(input_ids)
        if input_ids.device.type != "cpu":
            torch._assert_async((low >= 0) & (high < vocab_size), f"input_ids hold token ids outside it: {fix}")
        elif low < 0 or high >= vocab_size:
            raise IndexError(
                f"input_ids hold token ids from {int(low)} to {int(high)}, but vocab_size is {vocab_size}: {fix}"
            )


class LearnedPatchPositions(nn.Module):
    """One trained position per patch and one for [CLS] (ViT), interpolated bicubically for another image size."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.image_size, self.patch_size = image_pair(config.image_size), image_pair(config.patch_size)
        self.grid = tuple(side // step for side, step in zip(self.image_size, self.patch_size))
        self.weight = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], config.hidden_size))

    def forward(self, embeddings: torch.Tensor, height: int, width: int, interpolate: bool) -> torch.Tensor:
        if interpolate:
            return embeddings + self.interpolated(height // self.patch_size[0], width // self.patch_size[1])
        if (height, width) != self.image_size:
            raise ValueError(
                f"pixel_values are {height}x{width} images, but the model was built for {self.image_size[0]}x"
                f"{self.image_size[1]} (config.image_size): resize them with the checkpoint's image processor "
                "(AutoImageProcessor), or pass interpolate_pos_encoding=True to stretch the positions to this size."
            )
        return embeddings + self.weight

    def interpolated(self, rows: int, columns: int) -> torch.Tensor:
        """ViT's interpolation: the [CLS] position as it is, the patch grid resized (always while tracing, so an
        exported graph takes any size)."""
        if not torch.jit.is_tracing() and (rows, columns) == self.grid:
            return self.weight
        cls, grid = self.weight[:, :1], self.weight[:, 1:]
        dim = self.weight.shape[-1]
        grid = grid.reshape(1, *self.grid, dim).permute(0, 3, 1, 2)
        grid = nn.functional.interpolate(grid, size=(rows, columns), mode="bicubic", align_corners=False)
        return torch.cat((cls, grid.permute(0, 2, 3, 1).view(1, -1, dim)), dim=1)


class NoPatchPositions(nn.Module):
    """Positions come from elsewhere (rotary, a sinusoid over the sequence) or nowhere: any image size is read."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()

    def forward(self, embeddings: torch.Tensor, height: int, width: int, interpolate: bool) -> torch.Tensor:
        return embeddings


PATCH_POSITIONS = {"learned": LearnedPatchPositions}  # position schemes the patch front-end applies itself


class PatchEmbedding(nn.Module):
    """Images -> a [CLS] vector then one vector per `patch_size` square (ViT): a convolution with the patch as
    kernel and stride, and with `"learned"` positions the per-patch table of `LearnedPatchPositions`."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        patch = image_pair(config.patch_size)
        self.num_channels = config.num_channels
        self.projection = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.positions = PATCH_POSITIONS.get(config.position_embedding_type, NoPatchPositions)(config)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None = None) -> torch.Tensor:
        batch, channels, height, width = pixel_values.shape
        if channels != self.num_channels:
            raise ValueError(
                f"pixel_values have {channels} channels, but config.num_channels is {self.num_channels}: prepare "
                "the images with the checkpoint's image processor (AutoImageProcessor), which converts them "
                "(grey or RGBA to RGB), or pass images with that many channels."
            )
        patches = self.projection(pixel_values.to(self.projection.weight.dtype)).flatten(2).transpose(1, 2)
        embeddings = torch.cat((self.cls_token.expand(batch, -1, -1), patches), dim=1)
        return self.positions(embeddings, height, width, bool(interpolate_pos_encoding))


@dataclass(frozen=True)
class InputEmbedding:
    """What a model reads: the forward argument (`main_input_name`), the module that embeds it and the attribute
    its tensors are saved under, and the position schemes the module applies itself (then not the backbone)."""

    attribute: str
    main_input_name: str
    modality: str  # transformers' `input_modalities`
    module: Callable[[CustomTransformerConfig], nn.Module]
    embed: Callable  # (module, main input, interpolate_pos_encoding) -> one vector per position
    own_positions: tuple[str, ...] = ()


def token_embedding(config: CustomTransformerConfig) -> TokenEmbedding:
    return TokenEmbedding(config.vocab_size, config.hidden_size, config.pad_token_id)


def embed_tokens(module: nn.Module, input_ids: torch.Tensor, interpolate_pos_encoding: bool | None) -> torch.Tensor:
    return module(input_ids)


def embed_patches(module: nn.Module, pixel_values: torch.Tensor, interpolate_pos_encoding: bool | None):
    return module(pixel_values, interpolate_pos_encoding)


INPUT_EMBEDDINGS = {
    "tokens": InputEmbedding("embed_tokens", "input_ids", "text", token_embedding, embed_tokens),
    "patches": InputEmbedding(
        "embed_patches", "pixel_values", "image", PatchEmbedding, embed_patches, own_positions=tuple(PATCH_POSITIONS)
    ),
}


# ----------------------------------------------------------------------------------------------------------------
# Models


class CustomTransformerPreTrainedModel(PreTrainedModel):
    """What every head shares, and what each head declares: the Auto class that loads it and the configs it fits
    (its stacks and input embeddings), read by registration, `auto_map`, the tests, `convert` and export."""

    auto_class: str
    stacks: tuple[str, ...] = ("encoder", "decoder")  # keys of STACKS
    input_kinds: tuple[str, ...] = ("tokens",)  # keys of INPUT_EMBEDDINGS
    config_class = CustomTransformerConfig
    config: CustomTransformerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["CustomTransformerLayer"]
    _skip_keys_device_placement = CACHE_NAMES
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True
    _can_record_outputs = {
        "hidden_states": CustomTransformerLayer,
        "attentions": CustomTransformerAttention,
        "cross_attentions": CustomTransformerCrossAttention,
    }

    def __init__(self, config: CustomTransformerConfig, *inputs, **kwargs):
        super().__init__(config, *inputs, **kwargs)
        embedding = INPUT_EMBEDDINGS[config.input_embedding]  # what pipelines, Trainer and generate pass first
        self.main_input_name, self.input_modalities = embedding.main_input_name, embedding.modality

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        """Initialise parameters and rebuild computed buffers, which are garbage after a meta-device load."""
        super()._init_weights(module)
        if isinstance(module, PatchEmbedding):  # as ViT: truncated normal for [CLS]
            init.trunc_normal_(module.cls_token, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, LearnedPatchPositions):
            init.trunc_normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, ScaledInitLinear):
            std = self.config.initializer_range / math.sqrt(2 * self.config.num_hidden_layers)
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, SinusoidalPositionEmbedding):
            init.copy_(module.table, sinusoidal_table(module.num_positions, module.dim, module.layout))
        elif isinstance(module, CustomTransformerRotaryEmbedding):
            inv_freq, _ = module.compute_inv_freq()
            init.copy_(module.inv_freq, inv_freq)
            init.copy_(module.original_inv_freq, inv_freq)
        elif isinstance(module, CustomTransformerForConditionalGeneration):
            init.zeros_(module.final_logits_bias)

    def tie_weights(self, *args, **kwargs):
        super().tie_weights(*args, **kwargs)
        tie_heads_left_on_meta(self)  # a transformers 5.3 bug, see transformers_compat

    def encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs):
        """The backbone's outputs for the heads that read whole sequences at once (no key/value cache)."""
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            **kwargs,
        )

    def save_pretrained(
        self, save_directory, is_main_process=True, state_dict=None, push_to_hub=False, *args, **kwargs
    ):
        """Write an `auto_map` naming every head that fits this config (and for an encoder-decoder the pipelines
        transformers 5 removed, `custom_pipelines`), and replace the folder in one step.

        transformers records only the saved class, so a checkpoint saved from the causal-LM head would not
        load with `AutoModelForSequenceClassification` and `trust_remote_code=True`. It also writes file by file
        into the folder, so a kill or a full disk mid-save left the new config beside old or missing weights: here
        the files go to a staging folder that becomes the checkpoint only when complete, keeping the folder's other
        files (a Trainer's checkpoints and results). With `push_to_hub=True` the upload is part of the save: if it
        fails, the folder keeps its previous checkpoint.
        """
        self.config.auto_map = auto_map(self.config)
        if pipelines := shipped_pipelines(self.config):
            self.config.custom_pipelines = pipelines
        is_main_process = is_writing_rank(is_main_process)
        if push_to_hub:
            kwargs.setdefault("repo_id", Path(save_directory).name)  # transformers would name it after the staging
        arguments = (is_main_process, state_dict, push_to_hub, *args)
        target = Path(os.path.realpath(save_directory))  # through a symlink: the folder it points to
        if not is_main_process or kwargs.get("distributed_checkpoint") or not replaceable_in_one_step(target):
            return super().save_pretrained(save_directory, *arguments, **kwargs)
        with replacing_directory(target) as staging:
            super().save_pretrained(staging, *arguments, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """Refuse weights that cannot be trusted (`DamagedCheckpointError`, naming the file and the fix).

        transformers fills a weight the checkpoint lacks at random and only logs it, so one flipped byte in a
        tensor name gives a model that loads and computes garbage; and safetensors names neither the file nor the
        fix for a truncated one. Weights may be missing only for a head the checkpoint never had, when
        `ignore_mismatched_sizes=True` asks for new weights, or for a caller that takes the missing keys to judge
        itself (`output_loading_info=True`, as transformers' own tests and our converter do). Weights handed over in
        memory (`state_dict=`) are the caller's to judge: what the dict lacks is initialised, as transformers does.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        subfolder = kwargs.get("subfolder")
        with naming_damaged_weights(pretrained_model_name_or_path, subfolder):
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        if output_loading_info:
            return model, loading_info
        if kwargs.get("state_dict") is None and not kwargs.get("ignore_mismatched_sizes"):
            on_purpose = "ignore_mismatched_sizes=True"
            refuse_untrusted_weights(model, loading_info, pretrained_model_name_or_path, subfolder, on_purpose)
        return model

    @classmethod
    def fits(cls, config: CustomTransformerConfig) -> bool:
        """Whether this head is built for `config`: its stack and its input embedding."""
        return config.stack in cls.stacks and config.input_embedding in cls.input_kinds


class CustomTransformerModel(CustomTransformerPreTrainedModel):
    """The bare Transformer: embeddings, a stack of layers, and the final norm of pre-norm stacks.

    An encoder-decoder is two of them (`CustomTransformerSeq2SeqModel`), built with `stack="encoder"` and
    `stack="seq2seq-decoder"`; every other config is one, of `config.stack`.
    """

    auto_class = "AutoModel"
    input_kinds = tuple(INPUT_EMBEDDINGS)

    def __init__(self, config: CustomTransformerConfig, stack: str | None = None):
        super().__init__(config)
        if stack is None and config.stack not in STACKS:
            raise ValueError(
                f"CustomTransformerModel is one stack of layers, and this config is an {config.stack}: build "
                "CustomTransformerSeq2SeqModel (AutoModel) or CustomTransformerForConditionalGeneration "
                "(AutoModelForSeq2SeqLM) from it."
            )
        stack = STACKS[stack or config.stack]
        positions = POSITION_SCHEMES[config.position_embedding_type]
        inputs = INPUT_EMBEDDINGS[config.input_embedding]
        self.add_module(inputs.attribute, inputs.module(config))  # `embed_tokens`, as every text checkpoint names it
        self.embed = inputs.embed
        own_positions = config.position_embedding_type in inputs.own_positions
        self.embed_positions = NoEmbedding(config) if own_positions else positions.absolute(config)
        self.embed_token_types = TOKEN_TYPES[config.type_vocab_size > 0](config)
        self.embed_scale = math.sqrt(config.hidden_size) if config.scale_embeddings else 1.0
        self.embed_norm = build_norm(config) if config.embedding_norm else nn.Identity()
        self.embed_dropout = nn.Dropout(config.hidden_dropout)
        self.rotary_emb = positions.rotary(config)
        self.layers = nn.ModuleList(stack.layer(config, i, stack.is_causal) for i in range(stack.depth(config)))
        self.norm = NORM_PLACEMENTS[config.norm_placement].final_norm(config)
        self.build_mask, self.new_cache, self.cross_inputs = stack.build_mask, stack.new_cache, stack.cross_inputs
        self.output_class = stack.output
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return getattr(self, INPUT_EMBEDDINGS[self.config.input_embedding].attribute)

    def set_input_embeddings(self, value: nn.Module):
        setattr(self, INPUT_EMBEDDINGS[self.config.input_embedding].attribute, value)

    @record_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        cache_position: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        encoder_hidden_states: torch.FloatTensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPast:
        """Reads `input_ids` or, for `input_embedding="patches"`, `pixel_values` (`interpolate_pos_encoding=True`
        for images of another size than `config.image_size`), or `inputs_embeds`; the decoder of an encoder-decoder
        also reads the encoder's output (`encoder_hidden_states`, masked by `encoder_attention_mask`)."""
        main_input = pixel_values if self.main_input_name == "pixel_values" else input_ids
        if (main_input is None) ^ (inputs_embeds is not None):
            raise ValueError(f"You must specify exactly one of {self.main_input_name} or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.embed(self.get_input_embeddings(), main_input, interpolate_pos_encoding)
        cache = pop_cache(past_key_values, kwargs)
        if use_cache and cache is None:
            cache = self.new_cache(self.config)
        self_attention_cache, encoder_decoder_cache = split_cache(cache)
        # A paged cache (continuous batching) has no length: generate then always passes positions.
        if cache_position is None and (position_ids is None or NEEDS_CACHE_POSITION):
            past_seen = cache.get_seq_length() if cache is not None else 0
            # arange(n) + past rather than arange(past, past + n): a static cache's length is a tensor.
            cache_position = torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + past_seen
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)

        mask = self.build_mask(
            self.config, inputs_embeds, attention_mask, cache_position, self_attention_cache, position_ids
        )
        cross_args, cross_kwargs = self.cross_inputs(
            self.config, inputs_embeds, encoder_hidden_states, encoder_attention_mask, encoder_decoder_cache
        )

        hidden_states = self.embed_positions(inputs_embeds * self.embed_scale, position_ids)
        hidden_states = self.embed_token_types(hidden_states, token_type_ids)
        hidden_states = self.embed_dropout(self.embed_norm(hidden_states))
        position_embeddings = self.rotary_emb(hidden_states, position_ids)

        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                *cross_args,
                attention_mask=mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                cache_position=cache_position,
                **{CACHE_KWARG: self_attention_cache},
                **cross_kwargs,
                **kwargs,
            )
        return self.output_class(last_hidden_state=self.norm(hidden_states), **{CACHE_FIELD: cache})


class CustomTransformerForCausalLM(CustomTransformerPreTrainedModel, GenerationMixin):
    """Next-token prediction; the only head that can `generate`."""

    auto_class = "AutoModelForCausalLM"
    stacks = ("decoder",)

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}
    _pp_plan = {"lm_head": (["hidden_states"], ["logits"])}

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        if not config.is_decoder:
            raise ValueError(
                "CustomTransformerForCausalLM needs a causal model: set is_decoder=True in the config "
                "(bidirectional models are trained with CustomTransformerForMaskedLM)."
            )
        self.model = CustomTransformerModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CausalLMOutputWithPast:
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=pop_cache(past_key_values, kwargs),
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        logits = self.lm_head(slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep))
        loss = None
        if labels is not None:
            # loss_function shifts labels and honours `num_items_in_batch` (gradient accumulation, DDP).
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class MaskedLMHead(nn.Module):
    """BERT's prediction head: dense + activation + norm, then a decoder tied to the input embeddings."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act_fn = activation(config)
        self.norm = build_norm(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act_fn(self.dense(hidden_states))))


class CustomTransformerForMaskedLM(CustomTransformerPreTrainedModel):
    """Masked-token prediction for bidirectional (encoder) configs."""

    auto_class = "AutoModelForMaskedLM"
    stacks = ("encoder",)

    _tied_weights_keys = {"lm_head.decoder.weight": "model.embed_tokens.weight"}
    # Sharded like the embedding it is tied to (transformers shards `embed_tokens` row-wise), as in the causal LM.
    _tp_plan = {"lm_head.decoder": "colwise_gather_output"}

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        self.model = CustomTransformerModel(config)
        self.lm_head = MaskedLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear):
        self.lm_head.decoder = new_embeddings

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> MaskedLMOutput:
        outputs = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


def pool_first(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The first token ([CLS] in BERT)."""
    return hidden_states[:, 0]


def pool_last(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The last non-padding token, with left or right padding: the only token a causal model lets see everything."""
    if attention_mask is None:
        return hidden_states[:, -1]
    positions = torch.arange(attention_mask.shape[-1], device=hidden_states.device)
    last = (attention_mask.to(hidden_states.device, torch.long) * positions).argmax(-1)
    return hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]


def pool_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The mean over non-padding tokens."""
    if attention_mask is None:
        return hidden_states.mean(dim=1)
    weights = attention_mask.to(hidden_states.device, hidden_states.dtype).unsqueeze(-1)
    return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


POOLINGS = {"first": pool_first, "last": pool_last, "mean": pool_mean}


class SequencePooler(nn.Module):
    """Reduces a sequence to one vector: a token chosen by `classifier_pooling`, then BERT's dense+tanh if enabled."""

    def __init__(self, config: CustomTransformerConfig):
        super().__init__()
        self.pool = POOLINGS[config.classifier_pooling]
        self.dense = nn.Linear(config.hidden_size, config.hidden_size) if config.classifier_pooler else nn.Identity()
        self.activation = nn.Tanh() if config.classifier_pooler else nn.Identity()
        self.pad_token_id = config.pad_token_id

    def forward(self, hidden_states, attention_mask=None, input_ids=None) -> torch.Tensor:
        if attention_mask is None and input_ids is not None and self.pad_token_id is not None:
            attention_mask = input_ids != self.pad_token_id
        if attention_mask is not None and attention_mask.dim() != 2:
            attention_mask = None  # a 4-D mask has no per-token padding to read
        return self.activation(self.dense(self.pool(hidden_states, attention_mask)))


def classifier_dropout(config: CustomTransformerConfig) -> nn.Dropout:
    return nn.Dropout(config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout)


class CustomTransformerForSequenceClassification(CustomTransformerPreTrainedModel):
    """Classification or regression of a whole sequence; `config.problem_type` picks the loss."""

    auto_class = "AutoModelForSequenceClassification"

    # The loss is a mean over this batch: Trainer must not rescale it by world size or accumulation steps.
    accepts_loss_kwargs = False

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = CustomTransformerModel(config)
        self.pooler = SequencePooler(config)
        self.dropout = classifier_dropout(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        outputs = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        loss, logits = self.classify(outputs, labels, attention_mask, input_ids)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )

    def classify(
        self, outputs, labels, attention_mask=None, input_ids=None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The loss (None without labels) and the logits of the pooled sequence."""
        logits = self.score(self.dropout(self.pooler(outputs.last_hidden_state, attention_mask, input_ids)))
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return loss, logits


class CustomTransformerForTokenClassification(CustomTransformerPreTrainedModel):
    """One label per token (NER, tagging)."""

    auto_class = "AutoModelForTokenClassification"

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.model = CustomTransformerModel(config)
        self.dropout = classifier_dropout(config)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> TokenClassifierOutput:
        outputs = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        logits = self.score(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            # Token-level cross-entropy honours `num_items_in_batch`, so Trainer's rescaling stays correct.
            loss = self.loss_function(logits, labels, self.config, **kwargs)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class CustomTransformerForQuestionAnswering(CustomTransformerPreTrainedModel):
    """Extractive question answering: start and end logits over the tokens."""

    auto_class = "AutoModelForQuestionAnswering"

    accepts_loss_kwargs = False  # mean loss over this batch, see sequence classification

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        self.model = CustomTransformerModel(config)
        self.qa_outputs = nn.Linear(config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> QuestionAnsweringModelOutput:
        outputs = self.encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, **kwargs)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).split(1, dim=-1)
        start_logits, end_logits = start_logits.squeeze(-1).contiguous(), end_logits.squeeze(-1).contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = self.loss_function(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class CustomTransformerForImageClassification(CustomTransformerForSequenceClassification):
    """An image's class from its [CLS] vector (ViT): the sequence classifier reading patches; `config.problem_type`
    picks the loss, as for text."""

    auto_class = "AutoModelForImageClassification"
    stacks = ("encoder",)
    input_kinds = ("patches",)
    main_input_name = "pixel_values"
    input_modalities = "image"

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> ImageClassifierOutput:
        outputs = self.model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, use_cache=False, **kwargs
        )
        loss, logits = self.classify(outputs, labels)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


# ----------------------------------------------------------------------------------------------------------------
# Encoder-decoders


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """The decoder's inputs for `labels`: the start token, then the labels but the last, with -100 read as padding."""
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


class CustomTransformerSeq2SeqModel(CustomTransformerPreTrainedModel):
    """The bare encoder-decoder (2017 Transformer, Marian, BART): the encoder reads the source once, and the
    decoder attends causally to what it has written and to the encoder's output."""

    auto_class = "AutoModel"
    stacks = ("encoder-decoder",)
    # accelerate (FSDP, device maps) wraps each class named here, and refuses a name the model does not have.
    _no_split_modules = ["CustomTransformerLayer", "CustomTransformerDecoderLayer"]

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        self.encoder = CustomTransformerModel(config, stack="encoder")
        self.decoder = CustomTransformerModel(config, stack="seq2seq-decoder")
        self._tied_weights_keys = shared_embeddings(config, prefix="")
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self.encoder.set_input_embeddings(value)
        if self.config.share_encoder_decoder_embeddings:
            self.decoder.set_input_embeddings(value)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        """`encoder_outputs` skips the encoder (`generate` runs it once); `decoder_input_ids` are the target so far."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
            )
        elif not isinstance(encoder_outputs, ModelOutput):  # a tuple, as `return_dict=False` returns them
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            past_key_values=pop_cache(past_key_values, kwargs),
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **{CACHE_FIELD: getattr(decoder_outputs, CACHE_FIELD)},
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


def shared_embeddings(config: CustomTransformerConfig, prefix: str) -> dict[str, str]:
    """The decoder reads the encoder's embedding matrix when `share_encoder_decoder_embeddings` (tied weights)."""
    if not config.share_encoder_decoder_embeddings:
        return {}
    return {f"{prefix}decoder.embed_tokens.weight": f"{prefix}encoder.embed_tokens.weight"}


class CustomTransformerForConditionalGeneration(CustomTransformerPreTrainedModel, GenerationMixin):
    """Sequence-to-sequence generation (translation, summarisation): the encoder-decoder and a projection to the
    vocabulary plus a fixed bias (`final_logits_bias`, as Marian and BART). Labels are the target itself: the decoder
    reads them shifted right behind `decoder_start_token_id`, and the loss compares position by position."""

    auto_class = "AutoModelForSeq2SeqLM"
    stacks = ("encoder-decoder",)
    _no_split_modules = CustomTransformerSeq2SeqModel._no_split_modules

    def __init__(self, config: CustomTransformerConfig):
        super().__init__(config)
        self.model = CustomTransformerSeq2SeqModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        source = "model.encoder" if config.share_encoder_decoder_embeddings else "model.decoder"
        self._tied_weights_keys = {
            "lm_head.weight": f"{source}.embed_tokens.weight",
            **shared_embeddings(config, "model."),
        }
        self.post_init()

    def resize_token_embeddings(self, *args, **kwargs) -> nn.Embedding:
        """Both sides read one vocabulary: resize the decoder's embedding too when it has its own, and the bias."""
        embeddings = super().resize_token_embeddings(*args, **kwargs)
        vocab_size = embeddings.weight.shape[0]
        if not self.config.share_encoder_decoder_embeddings:
            decoder = self.model.decoder
            decoder.set_input_embeddings(self._get_resized_embeddings(decoder.get_input_embeddings(), vocab_size))
        bias = self.final_logits_bias[:, :vocab_size]
        padding = bias.new_zeros(1, vocab_size - bias.shape[1])
        self.register_buffer("final_logits_bias", torch.cat((bias, padding), dim=1))
        return embeddings

    def get_encoder(self) -> CustomTransformerModel:
        return self.model.encoder

    def get_decoder(self) -> CustomTransformerModel:
        return self.model.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """What `DataCollatorForSeq2Seq` calls to give each batch its `decoder_input_ids`."""
        for field in ("decoder_start_token_id", "pad_token_id"):
            if getattr(self.config, field) is None:
                raise ValueError(
                    f"config.{field} is None, so the decoder's inputs cannot be made from the labels: set it to the "
                    "tokenizer's id (Marian starts and pads with <pad>; BART starts with </s> and pads with <pad>)."
                )
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        decoder_inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        if labels is not None:
            use_cache = False  # training reads whole targets at once
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            decoder_position_ids=decoder_position_ids,
            encoder_outputs=encoder_outputs,
            past_key_values=pop_cache(past_key_values, kwargs),
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states) + self.final_logits_bias.to(hidden_states.dtype)
        loss = None
        if labels is not None:
            # The labels are already aligned with the logits: `shift_labels` stops the causal-LM loss from shifting
            # them again, and it honours `num_items_in_batch` (gradient accumulation, DDP) as for the causal LM.
            loss = self.loss_function(
                logits=logits, labels=None, shift_labels=labels, vocab_size=self.config.vocab_size, **kwargs
            )
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{CACHE_FIELD: getattr(outputs, CACHE_FIELD)},
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


# ----------------------------------------------------------------------------------------------------------------
# Auto classes


HEADS = (
    CustomTransformerModel,
    CustomTransformerForCausalLM,
    CustomTransformerForMaskedLM,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
    CustomTransformerForQuestionAnswering,
    CustomTransformerForImageClassification,
    CustomTransformerSeq2SeqModel,
    CustomTransformerForConditionalGeneration,
)

CustomTransformerConfig.register_for_auto_class()
for _head in HEADS:
    _head.register_for_auto_class(_head.auto_class)


def heads_fitting(config: CustomTransformerConfig) -> dict[str, type[CustomTransformerPreTrainedModel]]:
    """Auto class name -> head, for every head built for `config`."""
    return {head.auto_class: head for head in HEADS if head.fits(config)}


def shipped_pipelines(config: CustomTransformerConfig) -> dict[str, dict]:
    """`config.custom_pipelines`: the text-to-text pipelines an encoder-decoder checkpoint ships (none otherwise)."""
    return custom_pipelines(custom_pipelines.__module__.rsplit(".", 1)[-1]) if config.is_encoder_decoder else {}


def auto_map(config: CustomTransformerConfig) -> dict[str, str]:
    """The `auto_map` of a checkpoint: `AutoConfig` and every Auto class whose head fits the config."""
    module = __name__.rsplit(".", 1)[-1]
    config_module = CustomTransformerConfig.__module__.rsplit(".", 1)[-1]
    mapping = {"AutoConfig": f"{config_module}.CustomTransformerConfig"}
    mapping.update({name: f"{module}.{head.__name__}" for name, head in heads_fitting(config).items()})
    return mapping


__all__ = [
    "CustomTransformerPreTrainedModel",
    "CustomTransformerModel",
    "CustomTransformerForCausalLM",
    "CustomTransformerForMaskedLM",
    "CustomTransformerForSequenceClassification",
    "CustomTransformerForTokenClassification",
    "CustomTransformerForQuestionAnswering",
    "CustomTransformerForImageClassification",
    "CustomTransformerSeq2SeqModel",
    "CustomTransformerForConditionalGeneration",
]
