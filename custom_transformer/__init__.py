"""custom_transformer: one configurable Transformer (BERT, GPT-2, Llama, 2017 Transformer) for Hugging Face.

Importing the package registers the config and every head with the Auto classes, so checkpoints load with
`trust_remote_code=False` where the package is installed; checkpoints carry the code for everyone else.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from .configuration_custom_transformer import PRESETS, CustomTransformerConfig
from .modeling_custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForMaskedLM,
    CustomTransformerForQuestionAnswering,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
    CustomTransformerModel,
    CustomTransformerPreTrainedModel,
)

AutoConfig.register(CustomTransformerConfig.model_type, CustomTransformerConfig, exist_ok=True)
for _auto, _model in (
    (AutoModel, CustomTransformerModel),
    (AutoModelForCausalLM, CustomTransformerForCausalLM),
    (AutoModelForMaskedLM, CustomTransformerForMaskedLM),
    (AutoModelForSequenceClassification, CustomTransformerForSequenceClassification),
    (AutoModelForTokenClassification, CustomTransformerForTokenClassification),
    (AutoModelForQuestionAnswering, CustomTransformerForQuestionAnswering),
):
    _auto.register(CustomTransformerConfig, _model, exist_ok=True)

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
]
