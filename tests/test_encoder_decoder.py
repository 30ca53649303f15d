"""The encoder-decoder (2017 Transformer, Marian, BART) computes what transformers' own classes compute.

Each family's tiny reference is randomized, saved, converted with `custom_transformer.convert` and compared with
the reference as reloaded from its folder (Marian computes its sinusoids when it loads, so the model in memory is
not what its checkpoint holds): logits on padded batches, the loss for the same labels, and the tokens of greedy,
beam and sampled generation with the cache on, off and static. Then the other direction, ours to theirs.
"""

import pytest
import torch
from helpers.models import REFERENCE_FAMILIES, SEQ2SEQ_PRESETS, TINY, tiny_config, tiny_reference_config
from torch import nn
from torch.testing import assert_close
from transformers import BartForConditionalGeneration, BartModel, MarianConfig, MarianModel, MarianMTModel
from transformers.generation.streamers import BaseStreamer

from custom_transformer import (
    CustomTransformerConfig,
    CustomTransformerForConditionalGeneration,
    CustomTransformerModel,
    CustomTransformerSeq2SeqModel,
)
from custom_transformer.convert import convert
from custom_transformer.families import FAMILIES

EXACT = {"atol": 0.0, "rtol": 0.0}
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
PAD = TINY["pad_token_id"]
# family -> (transformers' generation head, its bare model)
REFERENCES = {"marian": (MarianMTModel, MarianModel), "bart": (BartForConditionalGeneration, BartModel)}
HEADS = {0: CustomTransformerForConditionalGeneration, 1: CustomTransformerSeq2SeqModel}
GENERATION_MODES = {
    "greedy": {},
    "greedy-without-cache": {"use_cache": False},
    "greedy-static-cache": {"cache_implementation": "static"},
    "beam-search": {"num_beams": 3},
    "beam-search-without-cache": {"num_beams": 3, "use_cache": False},
    "sampling": {"do_sample": True, "top_k": 20},
}


def test_every_encoder_decoder_family_with_a_reference_class_is_compared_with_it():
    seq2seq = {name for name in REFERENCE_FAMILIES if tiny_config(name).is_encoder_decoder}
    assert {FAMILIES[name].reference for name in seq2seq} == {head for head, _ in REFERENCES.values()}


def randomized(model: nn.Module) -> nn.Module:
    """Every trained parameter random, norms included, and wide enough that greedy choices are not near-ties
    (Marian's frozen sinusoids stay what they are)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn_like(parameter), alpha=0.5)
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """(family, 0 = generation head / 1 = bare model) -> (reference folder, converted folder), built once."""
    folders = {}

    def get(family: str, head: int = 0):
        if (family, head) not in folders:
            root = tmp_path_factory.mktemp(f"{family}-{head}")
            randomized(REFERENCES[family][head](tiny_reference_config(family))).save_pretrained(root / "reference")
            convert(root / "reference", root / "converted")
            folders[family, head] = root / "reference", root / "converted"
        return folders[family, head]

    return get


def load_pair(checkpoints, family: str, head: int = 0, attn_implementation: str = "sdpa"):
    reference_dir, converted_dir = checkpoints(family, head)
    reference = REFERENCES[family][head].from_pretrained(reference_dir, attn_implementation=attn_implementation)
    converted = HEADS[head].from_pretrained(converted_dir, attn_implementation=attn_implementation)
    return reference.eval(), converted.eval()


def source_batch() -> dict[str, torch.Tensor]:
    """Source sentences of 7 tokens, the first with 3 of padding, as a tokenizer pads them (on the right)."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, TINY["vocab_size"], (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, -3:] = 0
    return {"input_ids": input_ids.masked_fill(attention_mask == 0, PAD), "attention_mask": attention_mask}


def target_batch() -> dict[str, torch.Tensor]:
    """Decoder inputs of 5 tokens, the second row ending in 2 of padding."""
    generator = torch.Generator().manual_seed(1)
    decoder_input_ids = torch.randint(3, TINY["vocab_size"], (2, 5), generator=generator)
    decoder_attention_mask = torch.ones_like(decoder_input_ids)
    decoder_attention_mask[1, -2:] = 0
    return {"decoder_input_ids": decoder_input_ids, "decoder_attention_mask": decoder_attention_mask}


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", REFERENCES)
def test_converted_model_gives_the_reference_logits_on_padded_sources_and_targets(
    checkpoints, family, attn_implementation
):
    reference, converted = load_pair(checkpoints, family, attn_implementation=attn_implementation)
    inputs = {**source_batch(), **target_batch()}
    with torch.no_grad():
        expected, actual = reference(**inputs), converted(**inputs)
    real = inputs["decoder_attention_mask"].bool()
    assert_close(actual.logits[real], expected.logits[real], **EXACT)
    source = inputs["attention_mask"].bool()
    assert_close(actual.encoder_last_hidden_state[source], expected.encoder_last_hidden_state[source], **EXACT)


@pytest.mark.parametrize("family", REFERENCES)
def test_converted_bare_model_gives_the_reference_decoder_states(checkpoints, family):
    reference, converted = load_pair(checkpoints, family, head=1)
    inputs = {**source_batch(), **target_batch()}
    with torch.no_grad():
        expected, actual = reference(**inputs).last_hidden_state, converted(**inputs).last_hidden_state
    real = inputs["decoder_attention_mask"].bool()
    assert_close(actual[real], expected[real], **EXACT)


@pytest.mark.parametrize("family", REFERENCES)
def test_loss_on_labels_matches_the_reference_without_shifting_them_again(checkpoints, family):
    reference, converted = load_pair(checkpoints, family)
    labels = torch.randint(3, TINY["vocab_size"], (2, 6), generator=torch.Generator().manual_seed(2))
    labels[1, -2:] = -100  # DataCollatorForSeq2Seq's label padding
    with torch.no_grad():
        expected = reference(**source_batch(), labels=labels).loss
        actual = converted(**source_batch(), labels=labels).loss
    assert_close(actual, expected, **EXACT)
    per_position = nn.functional.cross_entropy(
        converted(**source_batch(), labels=labels).logits.flatten(0, 1), labels.flatten(), ignore_index=-100
    )
    assert_close(actual, per_position, **TOLERANCE)


@pytest.mark.parametrize("mode", GENERATION_MODES)
@pytest.mark.parametrize("family", REFERENCES)
def test_generation_gives_the_reference_tokens(checkpoints, family, mode):
    reference, converted = load_pair(checkpoints, family)
    settings = {**source_batch(), "max_new_tokens": 8, "do_sample": False, **GENERATION_MODES[mode]}
    torch.manual_seed(0)
    expected = reference.generate(**settings)
    torch.manual_seed(0)
    assert_close(converted.generate(**settings), expected, **EXACT)


def test_a_streamer_receives_each_generated_token_as_generate_writes_it(checkpoints):
    _, converted = load_pair(checkpoints, "bart")

    class Collector(BaseStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.reshape(-1).tolist())

        def end(self):
            self.chunks.append("end")

    streamer = Collector()
    source = {name: tensor[:1] for name, tensor in source_batch().items()}  # streamers take one sequence
    generated = converted.generate(**source, max_new_tokens=6, do_sample=False, streamer=streamer)
    first, *steps, end = streamer.chunks
    assert first == [generated[0, 0].item()] and end == "end"  # the start token, then one token per step
    assert [token for step in steps for token in step] == generated[0, 1:].tolist()


def test_the_decoder_projects_the_encoder_states_once_per_source_while_generating(checkpoints):
    _, converted = load_pair(checkpoints, "marian")
    calls = []
    for layer in converted.model.decoder.layers:
        layer.cross_attn.k_proj.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[1]))
    converted.generate(**source_batch(), max_new_tokens=6, do_sample=False, min_new_tokens=6)
    assert calls == [7] * len(converted.model.decoder.layers)  # one projection of the 7 source tokens per layer


@pytest.mark.parametrize("family", REFERENCES)
def test_checkpoint_round_trips_through_custom_transformer_to_identical_logits(checkpoints, family, tmp_path):
    reference_dir, converted_dir = checkpoints(family)
    convert(converted_dir, tmp_path / family, to_family=family)
    original = REFERENCES[family][0].from_pretrained(reference_dir).eval()
    round_tripped = REFERENCES[family][0].from_pretrained(tmp_path / family).eval()
    inputs = {**source_batch(), **target_batch()}
    with torch.no_grad():
        assert_close(round_tripped(**inputs).logits, original(**inputs).logits, **EXACT)


@pytest.mark.parametrize("family", REFERENCES)
def test_preset_model_exports_to_the_family_with_the_same_logits_and_generations(family, tmp_path):
    config = tiny_config(family, num_key_value_heads=TINY["num_attention_heads"])
    custom = randomized(CustomTransformerForConditionalGeneration(config)).eval()
    custom.save_pretrained(tmp_path / "custom")
    convert(tmp_path / "custom", tmp_path / family, to_family=family)
    exported = REFERENCES[family][0].from_pretrained(tmp_path / family).eval()
    inputs = {**source_batch(), **target_batch()}
    with torch.no_grad():
        assert_close(exported(**inputs).logits, custom(**inputs).logits, **TOLERANCE)
    settings = {**source_batch(), "max_new_tokens": 8, "do_sample": False}
    assert_close(exported.generate(**settings), custom.generate(**settings), **EXACT)


def test_a_marian_decoder_unlike_its_encoder_is_refused_naming_the_field(tmp_path):
    config = tiny_reference_config("marian")
    MarianMTModel(MarianConfig(**{**config.to_diff_dict(), "decoder_ffn_dim": 64})).save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="decoder_ffn_dim=64 differs from the encoder's 37"):
        convert(tmp_path / "m", tmp_path / "custom")


@pytest.mark.parametrize("preset", SEQ2SEQ_PRESETS)
def test_padding_the_source_does_not_change_what_the_decoder_computes(preset):
    torch.manual_seed(0)
    model = CustomTransformerForConditionalGeneration(tiny_config(preset)).eval()
    source, target = source_batch(), target_batch()["decoder_input_ids"]
    real = source["attention_mask"][0].bool()
    with torch.no_grad():
        padded = model(**source, decoder_input_ids=target).logits[0]
        alone = model(input_ids=source["input_ids"][:1, real], decoder_input_ids=target[:1]).logits[0]
    assert_close(padded, alone, **TOLERANCE)


def test_labels_become_the_decoder_inputs_shifted_right_behind_the_start_token():
    model = CustomTransformerForConditionalGeneration(tiny_config("marian", decoder_start_token_id=5))
    labels = torch.tensor([[11, 12, 13, -100], [21, 22, 23, 24]])
    assert model.prepare_decoder_input_ids_from_labels(labels).tolist() == [[5, 11, 12, 13], [5, 21, 22, 23]]


def test_without_a_start_token_the_decoder_inputs_cannot_be_made_and_the_error_says_which_to_set():
    model = CustomTransformerForConditionalGeneration(tiny_config("vaswani", decoder_start_token_id=None))
    with pytest.raises(ValueError, match="config.decoder_start_token_id is None"):
        model(**source_batch(), labels=torch.tensor([[11, 12], [21, 22]]))


def test_an_encoder_decoder_config_is_two_stacks_and_refuses_to_be_built_as_one():
    config = tiny_config("vaswani", decoder_layers=3)
    model = CustomTransformerSeq2SeqModel(config)
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (2, 3)
    assert model.decoder.get_input_embeddings().weight is model.encoder.get_input_embeddings().weight
    with pytest.raises(ValueError, match="build CustomTransformerSeq2SeqModel"):
        CustomTransformerModel(config)


def test_encoder_decoder_switches_are_validated_at_construction():
    with pytest.raises(ValueError, match="set is_decoder=False"):
        CustomTransformerConfig.from_preset("vaswani", is_decoder=True)
    with pytest.raises(ValueError, match="decoder_start_token_id=40000 is not a token id"):
        CustomTransformerConfig.from_preset("vaswani", decoder_start_token_id=40000)
    with pytest.raises(ValueError, match="sinusoid_layout='spiral' is not supported"):
        CustomTransformerConfig.from_preset("vaswani", sinusoid_layout="spiral")
