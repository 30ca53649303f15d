"""Tiny configs and models of every preset, their inputs, and tiny configs of the reference transformers families."""

import torch
from transformers import PreTrainedConfig, PreTrainedModel

from custom_transformer import PRESETS, CustomTransformerConfig
from custom_transformer.families import FAMILIES
from custom_transformer.modeling_custom_transformer import heads_fitting

# Every preset is tested: the lists come from the presets themselves, never from a list here.
PRESET_NAMES = tuple(PRESETS)
TEXT_PRESETS = tuple(name for name in PRESETS if CustomTransformerConfig(**PRESETS[name]).input_embedding == "tokens")
IMAGE_PRESETS = tuple(name for name in PRESETS if CustomTransformerConfig(**PRESETS[name]).input_embedding == "patches")
DECODER_PRESETS = tuple(name for name in PRESETS if CustomTransformerConfig(**PRESETS[name]).stack == "decoder")
ENCODER_PRESETS = tuple(name for name in TEXT_PRESETS if CustomTransformerConfig(**PRESETS[name]).stack == "encoder")
SEQ2SEQ_PRESETS = tuple(name for name in PRESETS if CustomTransformerConfig(**PRESETS[name]).stack == "encoder-decoder")
# The families transformers has a class of, which the equivalence tests compare with.
REFERENCE_FAMILIES = tuple(name for name, family in FAMILIES.items() if family.reference is not None)

TINY = {
    "vocab_size": 99,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "decoder_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 64,
    "hidden_dropout": 0.0,
    "attention_dropout": 0.0,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 0,
}


# What each input embedding adds: images of 16x16 RGB pixels in 4x4 patches (16 patches and [CLS]), no vocabulary and
# no grouped-query attention, which ViT does not have.
TINY_INPUTS = {
    "tokens": {},
    "patches": {
        "image_size": 16,
        "patch_size": 4,
        "num_channels": 3,
        "num_key_value_heads": 4,
        "vocab_size": 0,
        **dict.fromkeys(("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")),
    },
}


def tiny_config(preset: str = "llama", **overrides) -> CustomTransformerConfig:
    """A 2-layer, hidden-32 config of a preset (text: GQA with 2 KV heads; images: 16x16 pixels), for fast tests."""
    kind = overrides.get("input_embedding", PRESETS[preset].get("input_embedding", "tokens"))
    return CustomTransformerConfig.from_preset(preset, **{**TINY, **TINY_INPUTS.get(kind, {}), **overrides})


def heads_for(preset: str) -> dict[str, type[PreTrainedModel]]:
    """Auto class name -> head, for every head that fits the preset (and so is named in its checkpoints' auto_map)."""
    return heads_fitting(tiny_config(preset))


def build(model_class: type[PreTrainedModel], preset: str, **overrides) -> PreTrainedModel:
    """A tiny model of a preset in eval mode, seeded so two builds have the same weights."""
    torch.manual_seed(0)
    return model_class(tiny_config(preset, **overrides)).eval()


def make_inputs(batch: int = 2, seq: int = 7, left_padding: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and a mask where the first row has two padding tokens."""
    torch.manual_seed(0)
    input_ids = torch.randint(3, 99, (batch, seq))
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    pad = slice(0, 2) if left_padding else slice(seq - 2, seq)
    attention_mask[0, pad] = 0
    input_ids[0, pad] = 0
    return input_ids, attention_mask


def make_pixels(batch: int = 2, config: CustomTransformerConfig | None = None) -> torch.Tensor:
    """Random `pixel_values` of the tiny image size (or of `config`'s), values as an image processor leaves them."""
    config = config or tiny_config("vit")
    torch.manual_seed(0)
    height, width = (config.image_size,) * 2 if isinstance(config.image_size, int) else config.image_size
    return torch.randn(batch, config.num_channels, height, width)


def inputs_for(preset: str, **options) -> dict[str, torch.Tensor]:
    """A batch any head of the preset reads: token ids with a padded row (for an encoder-decoder, as the source and
    as the target so far), or images."""
    config = tiny_config(preset)
    if config.input_embedding == "patches":
        return {"pixel_values": make_pixels()}
    input_ids, attention_mask = make_inputs(**options)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if config.is_encoder_decoder:
        inputs |= {"decoder_input_ids": input_ids, "decoder_attention_mask": attention_mask}
    return inputs


def outputs_of(model: PreTrainedModel, **inputs) -> torch.Tensor:
    """The main output of any head: its logits (QA: the start logits), or the backbone's last hidden state."""
    out = model(**inputs)
    return out.start_logits if "start_logits" in out else out[0]


# Families whose transformers class has no grouped-query attention: their tiny configs have a key/value head per head.
WITHOUT_GROUPED_QUERY_ATTENTION = ("vit", "marian", "bart")


def tiny_family_config(family: str, **overrides) -> CustomTransformerConfig:
    """`tiny_config` of a family's preset, with a key/value head per head where transformers' class has no GQA."""
    heads = {"num_key_value_heads": TINY["num_attention_heads"]} if family in WITHOUT_GROUPED_QUERY_ATTENTION else {}
    return tiny_config(family, **{**heads, **overrides})


def tiny_reference_config(family: str, **overrides) -> PreTrainedConfig:
    """transformers' config of a family (llama, gpt2, bert, ...) at the sizes and special tokens of `tiny_config`."""
    reference = FAMILIES[family].reference_config(tiny_family_config(family))
    return type(reference)(**{**reference.to_diff_dict(), **overrides})
