"""Configuration of the one configurable Transformer: BERT, GPT-2, Llama and the 2017 Transformer are presets.

The config is a validating ``__init__`` rather than a ``@strict`` dataclass because the checkpoint code
must also load under transformers 5.0, where config subclasses cannot be strict dataclasses yet.
"""

# ruff: noqa: I001 - the version check must run before transformers names that older releases lack.
from .transformers_compat import CACHE_NAMES, MIN_TRANSFORMERS_VERSION

import copy

import transformers
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS


# Named architectures as plain data: each preset is the set of switches that reproduces one family. Sizes are
# those of the published base models; override any field, e.g. `from_preset("llama", hidden_size=256)`. They live
# in this file because every file a checkpoint ships must be a direct import of the modules transformers loads
# (transformers 5.8 - 5.9 copy only direct relative imports into the dynamic-module cache).
PRESETS: dict[str, dict] = {
    # Devlin et al. 2018: bidirectional, post-LN, learned positions, token types, GELU, [CLS] pooler.
    "bert": {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "max_position_embeddings": 512,
        "layer_norm_eps": 1e-12,
        "is_decoder": False,
        "position_embedding_type": "learned",
        "norm_type": "layernorm",
        "norm_placement": "post",
        "mlp_type": "plain",
        "attention_bias": True,
        "mlp_bias": True,
        "type_vocab_size": 2,
        "embedding_norm": True,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.1,
        "classifier_pooling": "first",
        "classifier_pooler": True,
        "pad_token_id": 0,
        "tie_word_embeddings": True,
    },
    # Radford et al. 2019: causal, pre-LN with a final norm, learned positions, gelu_new, tied LM head.
    "gpt2": {
        "vocab_size": 50257,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu_new",
        "max_position_embeddings": 1024,
        "layer_norm_eps": 1e-5,
        "is_decoder": True,
        "position_embedding_type": "learned",
        "norm_type": "layernorm",
        "norm_placement": "pre",
        "mlp_type": "plain",
        "attention_bias": True,
        "mlp_bias": True,
        "scale_residual_init": True,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.1,
        "classifier_pooling": "last",
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": True,
    },
    # Touvron et al. 2023 (Llama 2 7B shape): causal, pre-RMSNorm, RoPE, SwiGLU, no biases, untied head.
    "llama": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "intermediate_size": 11008,
        "hidden_act": "silu",
        "max_position_embeddings": 4096,
        "layer_norm_eps": 1e-6,
        "is_decoder": True,
        "position_embedding_type": "rope",
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "norm_type": "rmsnorm",
        "norm_placement": "pre",
        "mlp_type": "gated",
        "attention_bias": False,
        "mlp_bias": False,
        "classifier_pooling": "last",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
    },
    # Vaswani et al. 2017 (base): an encoder-decoder of 6 + 6 post-LN layers, fixed sinusoidal positions, one
    # vocabulary shared by both sides and the output projection, embeddings scaled by sqrt(d_model), ReLU. Checkpoints
    # saved when this preset was the encoder alone keep loading as encoders: their config.json says so.
    "vaswani": {
        "vocab_size": 37000,
        "hidden_size": 512,
        "num_hidden_layers": 6,
        "decoder_layers": 6,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
        "hidden_act": "relu",
        "max_position_embeddings": 5000,
        "layer_norm_eps": 1e-5,
        "is_decoder": False,
        "is_encoder_decoder": True,
        "position_embedding_type": "sinusoidal",
        "norm_type": "layernorm",
        "norm_placement": "post",
        "mlp_type": "plain",
        "attention_bias": True,
        "mlp_bias": True,
        "scale_embeddings": True,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.0,
        "classifier_pooling": "mean",
        "tie_word_embeddings": True,
    },
    # The config.json of Helsinki-NLP/opus-mt-en-de (MarianMTModel): the 2017 Transformer as Marian trains it, with the
    # sinusoids in halves (all sines, then all cosines) and a decoder that starts from the padding token.
    "marian": {
        "vocab_size": 58101,
        "hidden_size": 512,
        "num_hidden_layers": 6,
        "decoder_layers": 6,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
        "hidden_act": "swish",
        "max_position_embeddings": 512,
        "layer_norm_eps": 1e-5,
        "is_decoder": False,
        "is_encoder_decoder": True,
        "position_embedding_type": "sinusoidal",
        "sinusoid_layout": "halves",
        "norm_type": "layernorm",
        "norm_placement": "post",
        "mlp_type": "plain",
        "attention_bias": True,
        "mlp_bias": True,
        "scale_embeddings": True,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.0,
        "pad_token_id": 58100,
        "eos_token_id": 0,
        "decoder_start_token_id": 58100,
        "tie_word_embeddings": True,
    },
    # The config.json of facebook/bart-base (BartForConditionalGeneration): BERT-like learned positions and a norm
    # over the embeddings on both sides, GELU, post-LN; the decoder starts from </s>.
    "bart": {
        "vocab_size": 50265,
        "hidden_size": 768,
        "num_hidden_layers": 6,
        "decoder_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "max_position_embeddings": 1024,
        "layer_norm_eps": 1e-5,
        "is_decoder": False,
        "is_encoder_decoder": True,
        "position_embedding_type": "learned",
        "norm_type": "layernorm",
        "norm_placement": "post",
        "mlp_type": "plain",
        "attention_bias": True,
        "mlp_bias": True,
        "embedding_norm": True,
        "hidden_dropout": 0.1,
        "attention_dropout": 0.1,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "decoder_start_token_id": 2,
        "tie_word_embeddings": True,
    },
    # Dosovitskiy et al. 2020, the config.json of google/vit-base-patch16-224: 16x16 patches of a 224x224 RGB image
    # with a [CLS] token and learned positions, then the pre-LN, GELU, biased, bidirectional stack; [CLS] classifies.
    "vit": {
        "input_embedding": "patches",
        "image_size": 224,
        "patch_size": 16,
        "num_channels": 3,
        "vocab_size": 0,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "is_decoder": False,
        "position_embedding_type": "learned",
        "norm_type": "layernorm",
        "norm_placement": "pre",
        "mlp_type": "plain",
        "attention_bias": True,
        "mlp_bias": True,
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "classifier_pooling": "first",
        "tie_word_embeddings": False,
    },
}

# The version of this code, written into every saved config.json: it tells which code a checkpoint runs
# (`python -m custom_transformer.refresh` brings an old checkpoint's code up to date). Bump it with any change
# to the files shipped in checkpoints; pyproject.toml reads the package version from here.
CODE_VERSION = "0.4.0"

# rope_type "default" is computed by the model itself; the others come from transformers' ROPE_INIT_FUNCTIONS.
POSITION_EMBEDDING_TYPES = ("rope", "learned", "sinusoidal", "none")
NORM_TYPES = ("rmsnorm", "layernorm")
NORM_PLACEMENTS = ("pre", "post")
MLP_TYPES = ("gated", "plain")
CLASSIFIER_POOLINGS = ("first", "last", "mean")
INPUT_EMBEDDING_TYPES = ("tokens", "patches")  # what the model reads: token ids, or images cut into patches
# Where a sinusoidal table puts its sines and cosines: interleaved (the paper) or in two halves (Marian, fairseq).
SINUSOID_LAYOUTS = ("interleaved", "halves")

ATTENTION_TP_PLAN = {
    "layers.*.self_attn.q_proj": "colwise",
    "layers.*.self_attn.k_proj": "colwise",
    "layers.*.self_attn.v_proj": "colwise",
    "layers.*.self_attn.o_proj": "rowwise",
}
MLP_TP_PLANS = {
    "gated": {
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    },
    "plain": {"layers.*.mlp.up_proj": "colwise", "layers.*.mlp.down_proj": "rowwise"},
}


def tensor_parallel_plan(config: "CustomTransformerConfig") -> dict[str, str] | None:
    """Every attention and MLP of the base model, in its module names. None for an encoder-decoder: its two stacks
    are models of their own that would each apply the plan, and tensor parallelism is not tested for them."""
    if config.is_encoder_decoder:
        return None
    return {**ATTENTION_TP_PLAN, **MLP_TP_PLANS[config.mlp_type]}


class CustomTransformerConfig(PreTrainedConfig):
    r"""Configuration for [`CustomTransformerModel`] and its heads.

    The defaults describe a small Llama-style decoder. Architectural switches:

    - `is_decoder`: causal self-attention (GPT-2, Llama) or bidirectional (BERT).
    - `is_encoder_decoder`: a bidirectional encoder of `num_hidden_layers` and a causal decoder of
      `decoder_layers` whose layers also attend to the encoder's output (the 2017 Transformer, Marian, BART).
      Both sides share the vocabulary; `share_encoder_decoder_embeddings` gives them one embedding matrix (and with
      `tie_word_embeddings` the output projection too). Generation starts from `decoder_start_token_id`.
    - `position_embedding_type`: `"rope"` (rotary, parameters in `rope_parameters`), `"learned"` absolute
      embeddings (BERT, GPT-2), `"sinusoidal"` fixed table (Vaswani et al. 2017; `sinusoid_layout` `"interleaved"`
      as in the paper or `"halves"` as in Marian) or `"none"`.
    - `norm_type`: `"rmsnorm"` or `"layernorm"`; `norm_placement`: `"pre"` (GPT-2, Llama; adds a final norm)
      or `"post"` (BERT, 2017 Transformer).
    - `mlp_type`: `"gated"` (SwiGLU-style, Llama) or `"plain"` (two linear layers).
    - `attention_bias` / `mlp_bias`: biases on the attention and MLP projections.
    - `type_vocab_size`: number of token types (BERT segments); 0 disables them.
    - `scale_embeddings`: multiply token embeddings by sqrt(hidden_size) (2017 Transformer).
    - `embedding_norm`: normalise the summed embeddings (BERT).
    - `scale_residual_init`: start the attention and MLP output projections at
      `initializer_range / sqrt(2 * num_hidden_layers)` (GPT-2), so the residual stream does not grow with depth.
    - `classifier_pooling`: which token the sequence-classification head reads (`"first"` = [CLS],
      `"last"` = last non-padding token, `"mean"`); `classifier_pooler` adds BERT's dense+tanh pooler.
    - `hub_kernels`: let `from_pretrained(use_kernels=True)` (the default of transformers 5.25+ when the `kernels`
      package is installed) replace the activations with kernels downloaded from the Hub on GPUs. Off by default,
      so a model computes the same numbers whether or not `kernels` is installed.
    - `input_embedding`: what the model reads; `"tokens"` (token ids through `embed_tokens`, `vocab_size` rows) or
      `"patches"` (ViT: `pixel_values` of `num_channels` x `image_size` cut into `patch_size` squares, a [CLS]
      token in front; `"learned"` positions are then one per patch, interpolable to other image sizes).

    Use [`CustomTransformerConfig.from_preset`] for the named architectures.
    """

    model_type = "custom_transformer"
    keys_to_ignore_at_inference = CACHE_NAMES  # Trainer.evaluate/predict drop the cache from the outputs
    # Pipeline-parallel plan, in the module names of `CustomTransformerModel`.
    base_model_pp_plan = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    def __init__(
        self,
        vocab_size: int = 32000,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        num_key_value_heads: int | None = None,
        head_dim: int | None = None,
        intermediate_size: int = 2048,
        hidden_act: str = "silu",
        max_position_embeddings: int = 2048,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-6,
        is_decoder: bool = True,
        position_embedding_type: str = "rope",
        rope_parameters: dict | None = None,
        norm_type: str = "rmsnorm",
        norm_placement: str = "pre",
        mlp_type: str = "gated",
        attention_bias: bool = False,
        mlp_bias: bool = False,
        type_vocab_size: int = 0,
        scale_embeddings: bool = False,
        embedding_norm: bool = False,
        scale_residual_init: bool = False,
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        classifier_dropout: float | None = None,
        classifier_pooling: str | None = None,
        classifier_pooler: bool = False,
        use_cache: bool | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        tie_word_embeddings: bool = True,
        hub_kernels: bool = False,
        input_embedding: str = "tokens",
        image_size: int | list[int] = 224,
        patch_size: int | list[int] = 16,
        num_channels: int = 3,
        is_encoder_decoder: bool = False,
        decoder_layers: int | None = None,
        share_encoder_decoder_embeddings: bool = True,
        decoder_start_token_id: int | None = None,
        sinusoid_layout: str = "interleaved",
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.head_dim = head_dim  # derived from hidden_size in validate_architecture when None
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.is_decoder = is_decoder
        self.position_embedding_type = position_embedding_type
        self.rope_parameters = {"rope_type": "default", "rope_theta": 10000.0, **copy.deepcopy(rope_parameters or {})}
        self.norm_type = norm_type
        self.norm_placement = norm_placement
        self.mlp_type = mlp_type
        self.attention_bias = attention_bias
        self.mlp_bias = mlp_bias
        self.type_vocab_size = type_vocab_size
        self.scale_embeddings = scale_embeddings
        self.embedding_norm = embedding_norm
        self.scale_residual_init = scale_residual_init
        self.hidden_dropout = hidden_dropout
        self.attention_dropout = attention_dropout
        self.classifier_dropout = classifier_dropout
        self.classifier_pooling = classifier_pooling or ("last" if is_decoder else "first")
        self.classifier_pooler = classifier_pooler
        # Only causal stacks reuse keys and values: decoders, and the decoder of an encoder-decoder.
        self.use_cache = (is_decoder or is_encoder_decoder) if use_cache is None else use_cache
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings
        self.hub_kernels = hub_kernels
        self.input_embedding = input_embedding
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.is_encoder_decoder = is_encoder_decoder
        self.decoder_layers = num_hidden_layers if decoder_layers is None else decoder_layers
        self.share_encoder_decoder_embeddings = share_encoder_decoder_embeddings
        self.decoder_start_token_id = decoder_start_token_id
        self.sinusoid_layout = sinusoid_layout
        # Validate before the base class runs its own checks (transformers >= 5.2x), so errors name our fields.
        self.validate_architecture()
        kwargs.pop("code_version", None)  # always the version of the code running now, see CODE_VERSION
        kwargs.pop("base_model_tp_plan", None)  # derived below; some releases wrote it into config.json
        super().__init__(is_encoder_decoder=is_encoder_decoder, **kwargs)  # transformers' own field
        self.code_version = CODE_VERSION
        # Tensor-parallel plan of `CustomTransformerModel`: column-wise in, row-wise out, per MLP kind. An
        # attribute, not a property: transformers 5.15 - 5.20 assign it in `PreTrainedConfig.__init__`.
        self.base_model_tp_plan = tensor_parallel_plan(self)

    @property
    def stack(self) -> str:
        """The layers: `"decoder"` (causal self-attention), `"encoder"` (bidirectional) or `"encoder-decoder"`."""
        if self.is_encoder_decoder:
            return "encoder-decoder"
        return "decoder" if self.is_decoder else "encoder"

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "CustomTransformerConfig":
        """Build the config of a named architecture (`bert`, `gpt2`, `llama`, `vaswani`, ...), with overrides."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}. Known presets: {', '.join(sorted(PRESETS))}.")
        return cls(**{**PRESETS[name], **overrides})

    def validate_architecture(self):
        """Raise at construction, naming the field and the fix, instead of failing deep inside `forward`."""
        _check_choice("position_embedding_type", self.position_embedding_type, POSITION_EMBEDDING_TYPES)
        _check_choice("norm_type", self.norm_type, NORM_TYPES)
        _check_choice("norm_placement", self.norm_placement, NORM_PLACEMENTS)
        _check_choice("mlp_type", self.mlp_type, MLP_TYPES)
        _check_choice("classifier_pooling", self.classifier_pooling, CLASSIFIER_POOLINGS)
        _check_choice("input_embedding", self.input_embedding, INPUT_EMBEDDING_TYPES)
        _check_choice("sinusoid_layout", self.sinusoid_layout, SINUSOID_LAYOUTS)
        INPUT_CHECKS[self.input_embedding](self)
        if self.is_encoder_decoder:
            self._validate_encoder_decoder()
        for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            _check_positive(field, getattr(self, field))
        _check_positive("num_key_value_heads", self.num_key_value_heads)
        if self.head_dim is None:
            if self.hidden_size % self.num_attention_heads:
                raise ValueError(
                    f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                    f"{self.num_attention_heads}. Pick a hidden_size that is a multiple of the head count, "
                    "or set head_dim explicitly."
                )
            self.head_dim = self.hidden_size // self.num_attention_heads
        _check_positive("head_dim", self.head_dim)
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"hidden_act={self.hidden_act!r} is not a known activation. "
                f"Use one of transformers' ACT2FN names, e.g. 'gelu', 'gelu_new', 'relu', 'silu'."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not divisible by "
                f"num_key_value_heads={self.num_key_value_heads}. Grouped-query attention shares each key/value head "
                "among a whole number of query heads: pick a divisor of num_attention_heads."
            )
        if self.position_embedding_type == "rope":
            self._validate_rope()
        if self.position_embedding_type == "sinusoidal" and self.hidden_size % 2:
            raise ValueError(f"position_embedding_type='sinusoidal' needs an even hidden_size, got {self.hidden_size}.")
        for field in ("hidden_dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(f"{field}={getattr(self, field)} must be in [0, 1).")
        if not isinstance(self.hub_kernels, bool):
            raise ValueError(f"hub_kernels={self.hub_kernels!r} must be True or False.")
        if self.type_vocab_size < 0:
            raise ValueError(f"type_vocab_size={self.type_vocab_size} must be >= 0 (0 disables token types).")

    def _validate_encoder_decoder(self):
        _check_positive("decoder_layers", self.decoder_layers)
        if self.is_decoder:
            raise ValueError(
                "is_encoder_decoder=True builds a bidirectional encoder and a causal decoder: set is_decoder=False "
                "(is_decoder=True alone is a decoder-only model such as GPT-2)."
            )
        if self.input_embedding != "tokens":
            raise ValueError(
                f"is_encoder_decoder=True reads token ids on both sides, not input_embedding={self.input_embedding!r}."
            )
        if self.decoder_start_token_id is not None and not 0 <= self.decoder_start_token_id < self.vocab_size:
            raise ValueError(
                f"decoder_start_token_id={self.decoder_start_token_id} is not a token id of the vocabulary "
                f"(vocab_size={self.vocab_size}): use the tokenizer's pad (Marian) or </s> (BART) id."
            )

    def _validate_rope(self):
        rope_type = self.rope_parameters.get("rope_type", "default")
        known = ("default", *ROPE_INIT_FUNCTIONS)
        if rope_type not in known:
            raise ValueError(
                f"rope_parameters['rope_type']={rope_type!r} is not supported by transformers "
                f"{transformers.__version__}. Use one of: {', '.join(known)}."
            )
        if self.head_dim % 2:
            raise ValueError(f"Rotary embeddings rotate pairs of dimensions: head_dim={self.head_dim} must be even.")


def _check_tokens(config: CustomTransformerConfig):
    _check_positive("vocab_size", config.vocab_size)


def _check_patches(config: CustomTransformerConfig):
    _check_positive("num_channels", config.num_channels)
    image, patch = image_pair(config.image_size), image_pair(config.patch_size, "patch_size")
    if any(side < step for side, step in zip(image, patch)):
        raise ValueError(
            f"patch_size={config.patch_size} is larger than image_size={config.image_size}: the image would have no "
            "patch. Pick a patch_size that divides the image size (16 for 224, 4 for 28)."
        )
    if config.is_decoder:
        raise ValueError("input_embedding='patches' reads a whole image at once: set is_decoder=False.")


INPUT_CHECKS = {"tokens": _check_tokens, "patches": _check_patches}  # what each input embedding needs of a config


def image_pair(value, field: str = "image_size") -> tuple[int, int]:
    """An image size or patch size given as one int (a square) or as [height, width]."""
    pair = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value or ())
    if len(pair) != 2:
        raise ValueError(f"{field}={value!r} must be a positive integer or a [height, width] pair of them.")
    for side in pair:
        _check_positive(field, side)
    return pair


def _check_choice(field: str, value, choices: tuple[str, ...]):
    if value not in choices:
        raise ValueError(f"{field}={value!r} is not supported. Choose one of: {', '.join(map(repr, choices))}.")


def _check_positive(field: str, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{field}={value!r} must be a positive integer.")


__all__ = ["CODE_VERSION", "PRESETS", "CustomTransformerConfig", "MIN_TRANSFORMERS_VERSION"]
