"""The Transformer families this package reproduces, one row each: what configures it, whom it must equal, and how
its checkpoints convert.

Everything that needs to know the families reads this table: `custom_transformer.convert` (through the rows'
conversions), the benchmarks (the reference class to race), and the tests (every preset is tested, and each
family with a reference is compared with it). A new family is a preset in `PRESETS`, its conversion rules in
`convert.py` and a row here. This module is a package tool: it is not copied into checkpoints.
"""

from collections.abc import Callable
from dataclasses import dataclass

from transformers import (
    BartForConditionalGeneration,
    BertForMaskedLM,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    MarianMTModel,
    PreTrainedConfig,
    PreTrainedModel,
    ViTForImageClassification,
)

from .configuration_custom_transformer import CustomTransformerConfig
from .convert import (
    EXPORTS,
    IMPORTS,
    Conversion,
    bart_config_from,
    bert_config_from,
    gpt2_config_from,
    llama_config_from,
    marian_config_from,
    vit_config_from,
)


@dataclass(frozen=True)
class Family:
    """A preset, the transformers class with the same outputs, and the conversions between their checkpoints."""

    preset: str  # the row of PRESETS that configures the family
    # transformers' class this preset reproduces exactly (equivalence tests, benchmarks), and our config in its fields
    reference: type[PreTrainedModel] | None = None
    reference_config: Callable[[CustomTransformerConfig], PreTrainedConfig] | None = None
    imports: Conversion | None = None  # `convert --from` one of transformers' checkpoints of the family
    exports: Conversion | None = None  # `convert --to-family`: ours back to transformers' class


FAMILIES = {
    "llama": Family("llama", LlamaForCausalLM, llama_config_from, IMPORTS["llama"], EXPORTS["llama"]),
    "gpt2": Family("gpt2", GPT2LMHeadModel, gpt2_config_from, IMPORTS["gpt2"]),
    "bert": Family("bert", BertForMaskedLM, bert_config_from, IMPORTS["bert"]),
    "vit": Family("vit", ViTForImageClassification, vit_config_from, IMPORTS["vit"], EXPORTS["vit"]),
    "marian": Family("marian", MarianMTModel, marian_config_from, IMPORTS["marian"], EXPORTS["marian"]),
    "bart": Family("bart", BartForConditionalGeneration, bart_config_from, IMPORTS["bart"], EXPORTS["bart"]),
    # The 2017 encoder-decoder as the paper writes it (interleaved sinusoids): transformers has no class of it, and
    # `convert.from_torch_encoder` takes torch's own encoder into the preset's encoder alone.
    "vaswani": Family("vaswani"),
}
