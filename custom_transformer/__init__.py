"""custom_transformer: one configurable Transformer (BERT, GPT-2, Llama, the 2017 encoder-decoder, Marian, BART, ViT)
for Hugging Face.

Importing the package registers the config and every head with its Auto class (`registration`), so checkpoints load
with `trust_remote_code=False` where the package is installed; checkpoints carry the code for everyone else.
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
]
