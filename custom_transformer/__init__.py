"""custom_transformer: one configurable Transformer (BERT, GPT-2, Llama, the 2017 encoder-decoder, Marian, BART, ViT)
for Hugging Face.

Importing the package registers the config and every head with its Auto class (`registration`), so checkpoints load
with `trust_remote_code=False` where the package is installed; checkpoints carry the code for everyone else.
`from_pretrained` verifies the code a checkpoint carries (`verify`) and loads it with the installed classes.
"""

from .configuration_custom_transformer import PRESETS, CustomTransformerConfig
from .modeling_custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForConditionalGeneration,
    CustomTransformerForImageClassification,
    CustomTransformerForMaskedLM,
    CustomTransformerForQuestionAnswering,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
    CustomTransformerModel,
    CustomTransformerPreTrainedModel,
    CustomTransformerSeq2SeqModel,
)
from .registration import register_with_auto_classes

register_with_auto_classes()

# Imported on first use, so that `python -m custom_transformer.verify` finds its module not yet imported.
LAZY = {"from_pretrained": "verified_loading", "UnverifiedCodeError": "verified_loading", "verify": "verify"}


def __getattr__(name: str):
    if name not in LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{LAZY[name]}", __name__), name)


__all__ = [
    "PRESETS",
    "CustomTransformerConfig",
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
    "from_pretrained",
    "verify",
    "UnverifiedCodeError",
]
