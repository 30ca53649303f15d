"""transformers' own model test suite (`ModelTesterMixin`), run over our heads as it runs over Llama and BERT.

The mixin decides which labels a head needs from transformers' Auto mappings, so for the duration of
each test our model type is added to those mappings (and only there: `patch.dict` restores them).
"""

import sys
import unittest
from pathlib import Path
from unittest.mock import patch

import torch
import transformers
from conftest import heads_for, tiny_config

sys.path.insert(0, str(Path(__file__).parent / "helpers"))
from transformers_test_suite import load  # noqa: E402

modeling_common = load("test_modeling_common")
ModelTesterMixin, ids_tensor = modeling_common.ModelTesterMixin, modeling_common.ids_tensor

ROPE_PRESETS = ("llama",)


class TinyModelTester:
    """What the mixin asks of a model tester: sizes, a config, and inputs."""

    batch_size, seq_length, is_training = 3, 7, True
    num_hidden_layers, num_attention_heads, hidden_size, vocab_size = 2, 4, 32, 99
    num_labels, num_choices = 3, 4

    def __init__(self, preset: str):
        self.preset = preset

    def get_config(self):
        return tiny_config(self.preset, num_labels=self.num_labels)

    def prepare_config_and_inputs_for_common(self):
        input_ids = ids_tensor([self.batch_size, self.seq_length], self.vocab_size)
        attention_mask = torch.ones_like(input_ids)
        attention_mask[0, -2:] = 0  # one padded row
        return self.get_config(), {"input_ids": input_ids, "attention_mask": attention_mask}


class CustomTransformerTesterBase(ModelTesterMixin):
    preset: str

    def setUp(self):
        self.model_tester = TinyModelTester(self.preset)
        if self._testMethodName.startswith("test_model_rope_scaling") and self.preset not in ROPE_PRESETS:
            self.skipTest(f"the {self.preset} preset has no rotary embeddings to scale")
        for auto_name, model_class in heads_for(self.preset).items():
            # The Auto class's lazy mapping holds the very `MODEL_..._MAPPING_NAMES` dict that the mixin reads.
            mapping = getattr(transformers, auto_name)._model_mapping._model_mapping
            patcher = patch.dict(mapping, {"custom_transformer": model_class.__name__})
            patcher.start()
            self.addCleanup(patcher.stop)

    def test_generation_tester_mixin_inheritance(self):
        """Generation is tested in tests/test_modeling.py; the sdist does not ship GenerationTesterMixin."""


class LlamaPresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    preset = "llama"
    all_model_classes = tuple(heads_for("llama").values())


class BertPresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    preset = "bert"
    all_model_classes = tuple(heads_for("bert").values())
