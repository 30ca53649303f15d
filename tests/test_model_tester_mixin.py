"""transformers' own model test suite (`ModelTesterMixin`), run over every head of every preset.

The mixin decides which labels a head needs from transformers' Auto mappings, so for the duration of
each test our model type is added to those mappings (and only there: `patch.dict` restores them).
"""

import unittest
from unittest.mock import patch

import torch
import transformers
from helpers.models import heads_for, tiny_config
from helpers.transformers_test_suite import load

modeling_common = load("test_modeling_common")
ModelTesterMixin, ids_tensor = modeling_common.ModelTesterMixin, modeling_common.ids_tensor


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
    """The mixin over the heads that fit one preset; a subclass names the preset."""

    preset: str
    # Our config file has no copyright year from 2023 on, which is how the mixin picks the models it holds to
    # "every weight initialised by _init_weights"; ours are held to it.
    test_can_init_all_missing_weights_before_2023 = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.all_model_classes = tuple(heads_for(cls.preset).values())

    def setUp(self):
        self.model_tester = TinyModelTester(self.preset)
        position_embedding_type = self.model_tester.get_config().position_embedding_type
        if self._testMethodName.startswith("test_model_rope_scaling") and position_embedding_type != "rope":
            self.skipTest(f"the {self.preset} preset has {position_embedding_type} positions, no rotary ones to scale")
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


class GPT2PresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    preset = "gpt2"


class BertPresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    preset = "bert"


class VaswaniPresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    preset = "vaswani"
