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
floats_tensor = modeling_common.floats_tensor


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


class TinyImageModelTester(TinyModelTester):
    """The same for images: 16x16 RGB in 4x4 patches, so 1 + 16 positions."""

    image_size, patch_size, num_channels = 16, 4, 3
    seq_length = 1 + (image_size // patch_size) ** 2

    def prepare_config_and_inputs_for_common(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixel_values}


class TinySeq2SeqModelTester(TinyModelTester):
    """The same for encoder-decoders: a padded source and a padded target of 7 tokens (the labels are the source)."""

    encoder_seq_length = decoder_seq_length = TinyModelTester.seq_length

    def prepare_config_and_inputs_for_common(self):
        config, inputs = super().prepare_config_and_inputs_for_common()
        decoder_input_ids = ids_tensor([self.batch_size, self.decoder_seq_length], self.vocab_size)
        decoder_attention_mask = torch.ones_like(decoder_input_ids)
        decoder_attention_mask[1, -1:] = 0
        return config, {
            **inputs,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
        }


class CustomTransformerTesterBase(ModelTesterMixin):
    """The mixin over the heads that fit one preset; a subclass names the preset."""

    preset: str
    model_tester_class = TinyModelTester
    # Our config file has no copyright year from 2023 on, which is how the mixin picks the models it holds to
    # "every weight initialised by _init_weights"; ours are held to it.
    test_can_init_all_missing_weights_before_2023 = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.all_model_classes = tuple(heads_for(cls.preset).values())

    def setUp(self):
        self.model_tester = self.model_tester_class(self.preset)
        position_embedding_type = self.model_tester.get_config().position_embedding_type
        if self._testMethodName.startswith("test_model_rope") and position_embedding_type != "rope":
            self.skipTest(f"the {self.preset} preset has {position_embedding_type} positions, no rotary ones")
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
    model_tester_class = TinySeq2SeqModelTester
    is_encoder_decoder = True


class BartPresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    """The other encoder-decoder switches: learned positions and a norm over each side's embeddings."""

    preset = "bart"
    model_tester_class = TinySeq2SeqModelTester
    is_encoder_decoder = True


class ViTPresetModelTest(CustomTransformerTesterBase, unittest.TestCase):
    preset = "vit"
    model_tester_class = TinyImageModelTester
    test_resize_embeddings = False  # a patch projection has no vocabulary to resize (as ViT's own test)

    def test_inputs_embeds(self):
        """The mixin's version embeds `input_ids`; for images, the embedded patches stand in for `pixel_values`."""
        config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
        model = transformers.AutoModel.from_config(config).eval()
        with torch.no_grad():
            embedded = model.get_input_embeddings()(inputs["pixel_values"])
            torch.testing.assert_close(model(inputs_embeds=embedded)[0], model(**inputs)[0])

    def test_model_get_set_embeddings(self):
        """The mixin's version expects an `nn.Embedding`; an image model's input embedding is its patch front-end."""
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIs(model.get_input_embeddings(), model.base_model.embed_patches)
            self.assertIsNone(model.get_output_embeddings())

    def test_inputs_embeds_matches_input_ids(self):
        """Covered by `test_inputs_embeds` above: images have no ids."""
        self.test_inputs_embeds()
