"""custom_transformer: one configurable Transformer (BERT, GPT-2, Llama, 2017 Transformer, ViT) for Hugging Face.

Importing the package registers the config and every head of `AUTO_CLASSES` with its Auto class, so checkpoints
load with `trust_remote_code=False` where the package is installed; checkpoints carry the code for everyone else.
"""

import transformers

from .configuration_custom_transformer import PRESETS, CustomTransformerConfig
from .modeling_custom_transformer import (
    AUTO_CLASSES,
    CustomTransformerForCausalLM,
    CustomTransformerForImageClassification,
    CustomTransformerForMaskedLM,
    CustomTransformerForQuestionAnswering,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
    CustomTransformerModel,
    CustomTransformerPreTrainedModel,
)

transformers.AutoConfig.register(CustomTransformerConfig.model_type, CustomTransformerConfig, exist_ok=True)
for _auto_name, _model_class in AUTO_CLASSES.items():
    getattr(transformers, _auto_name).register(CustomTransformerConfig, _model_class, exist_ok=True)

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
]
