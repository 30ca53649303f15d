"""Architecture fidelity: converted checkpoints compute what the originals compute.

Each case builds a tiny transformers reference, saves it, converts the folder with `custom_transformer.convert`
and holds the custom model to the reference's outputs, loss and greedy generations (images: logits at the trained
and at another size, and the image-classification pipeline's answers), in fp32, with both attention backends.
The 2017 Transformer is checked against `torch.nn.TransformerEncoder` and the paper's formula.
"""

import math

import numpy as np
import pytest
import torch
from helpers.models import REFERENCE_FAMILIES, TINY, make_pixels, tiny_config, tiny_reference_config
from PIL import Image
from torch import nn
from torch.testing import assert_close
from transformers import (
    BertForMaskedLM,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    ViTForImageClassification,
    ViTImageProcessorPil,
    ViTModel,
    pipeline,
)

from custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForImageClassification,
    CustomTransformerForMaskedLM,
    CustomTransformerForSequenceClassification,
    CustomTransformerForTokenClassification,
    CustomTransformerModel,
    CustomTransformerSeq2SeqModel,
)
from custom_transformer.convert import convert, from_torch_encoder
from custom_transformer.families import FAMILIES

TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}
EXACT = {"atol": 0.0, "rtol": 0.0}
PAD = TINY["pad_token_id"]
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 10000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

# case -> (reference class, reference-config overrides, class of the converted checkpoint)
CASES = {
    "llama": (LlamaForCausalLM, {}, CustomTransformerForCausalLM),
    "llama-biases-tied-llama3-rope": (
        LlamaForCausalLM,
        {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True, "rope_parameters": LLAMA3_ROPE},
        CustomTransformerForCausalLM,
    ),
    "llama-sequence-classification": (
        LlamaForSequenceClassification,
        {"num_labels": 3},
        CustomTransformerForSequenceClassification,
    ),
    "gpt2": (GPT2LMHeadModel, {}, CustomTransformerForCausalLM),
    "gpt2-model": (GPT2Model, {}, CustomTransformerModel),
    "gpt2-sequence-classification": (
        GPT2ForSequenceClassification,
        {"num_labels": 3},
        CustomTransformerForSequenceClassification,
    ),
    "bert-masked-lm": (BertForMaskedLM, {}, CustomTransformerForMaskedLM),
    "bert-sequence-classification": (
        BertForSequenceClassification,
        {"num_labels": 3},
        CustomTransformerForSequenceClassification,
    ),
    "bert-token-classification": (
        BertForTokenClassification,
        {"num_labels": 3},
        CustomTransformerForTokenClassification,
    ),
    "bert-model": (BertModel, {}, CustomTransformerModel),
}
DECODER_CASES = ["llama", "llama-biases-tied-llama3-rope", "gpt2"]
LANGUAGE_MODEL_CASES = [*DECODER_CASES, "bert-masked-lm"]
IMAGE_CASES = {
    "vit-image-classification": (ViTForImageClassification, {"num_labels": 3}, CustomTransformerForImageClassification),
    "vit-model": (ViTModel, {}, CustomTransformerModel),
}


def test_every_single_stack_family_with_a_reference_class_is_compared_with_it():
    """The encoder-decoders are compared in tests/test_encoder_decoder.py."""
    compared = {reference_class for reference_class, _, _ in (*CASES.values(), *IMAGE_CASES.values())}
    single_stack = [name for name in REFERENCE_FAMILIES if not tiny_config(name).is_encoder_decoder]
    assert {FAMILIES[name].reference for name in single_stack} <= compared


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """case -> (reference folder, converted folder); each reference is built, saved and converted once."""
    folders = {}

    def get(case: str):
        if case not in folders:
            reference_class, overrides, _ = {**CASES, **IMAGE_CASES}[case]
            config = tiny_reference_config(reference_class.config_class.model_type, **overrides)
            root = tmp_path_factory.mktemp(case)
            randomized(reference_class(config)).save_pretrained(root / "reference")
            convert(root / "reference", root / "converted")
            folders[case] = root / "reference", root / "converted"
        return folders[case]

    return get


def randomized(model: nn.Module) -> nn.Module:
    """Every parameter random, norms included: their initial ones and zeros would hide a swapped norm, and
    weights wider than the default init keep logits apart, so greedy choices are not near-ties."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter), alpha=0.2)
    return model


def load_pair(checkpoints, case: str, attn_implementation: str = "sdpa"):
    """The reference and the converted model, from their folders, with the same attention backend."""
    reference_class, _, converted_class = {**CASES, **IMAGE_CASES}[case]
    reference_dir, converted_dir = checkpoints(case)
    reference = reference_class.from_pretrained(reference_dir, attn_implementation=attn_implementation)
    converted = converted_class.from_pretrained(converted_dir, attn_implementation=attn_implementation)
    return reference.eval(), converted.eval()


def make_batch(padded: bool = True, left_padding: bool = True, batch: int = 2, seq: int = 7):
    """Token ids and attention mask; when padded, the first row has three padding tokens."""
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, TINY["vocab_size"], (batch, seq), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if padded:
        attention_mask[0, slice(0, 3) if left_padding else slice(seq - 3, seq)] = 0
    return input_ids.masked_fill(attention_mask == 0, PAD), attention_mask


def model_inputs(config, padded: bool = True) -> dict[str, torch.Tensor]:
    """A batch for a converted model's config: decoders padded on the left (as for generation), encoders on the
    right, and BERT's second segment marked in `token_type_ids`."""
    input_ids, attention_mask = make_batch(padded, left_padding=config.is_decoder)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if config.type_vocab_size:
        inputs["token_type_ids"] = (torch.arange(input_ids.shape[1]) >= 4).long().expand_as(input_ids)
    return inputs


def main_output(output) -> torch.Tensor:
    return output.logits if "logits" in output else output.last_hidden_state


def paper_sinusoids(num_positions: int, dim: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), element by element."""
    return torch.tensor(
        [
            [(math.sin, math.cos)[j % 2](pos / 10000 ** (2 * (j // 2) / dim)) for j in range(dim)]
            for pos in range(num_positions)
        ]
    )


# --- transformers references: Llama, GPT-2, BERT ------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("case", CASES)
def test_converted_model_gives_the_reference_outputs(checkpoints, case, attn_implementation, padded):
    reference, converted = load_pair(checkpoints, case, attn_implementation)
    inputs = model_inputs(converted.config, padded)
    with torch.no_grad():
        expected, actual = main_output(reference(**inputs)), main_output(converted(**inputs))
    if expected.dim() == 3:  # per-token outputs: padding positions are undefined, compare the real tokens
        real = inputs["attention_mask"].bool()
        expected, actual = expected[real], actual[real]
    assert_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("case", LANGUAGE_MODEL_CASES)
def test_language_model_loss_matches_the_reference_for_the_same_labels(checkpoints, case):
    reference, converted = load_pair(checkpoints, case)
    inputs = model_inputs(converted.config)
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    with torch.no_grad():
        expected = reference(**inputs, labels=labels).loss
        actual = converted(**inputs, labels=labels).loss
    assert_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize("use_cache", [True, False], ids=["with-cache", "without-cache"])
@pytest.mark.parametrize("case", DECODER_CASES)
def test_greedy_generation_gives_the_reference_tokens(checkpoints, case, use_cache):
    reference, converted = load_pair(checkpoints, case)
    input_ids, attention_mask = make_batch(left_padding=True)
    settings = {"attention_mask": attention_mask, "max_new_tokens": 8, "do_sample": False, "use_cache": use_cache}
    expected = reference.generate(input_ids, **settings)
    assert_close(converted.generate(input_ids, **settings), expected, **EXACT)


# --- transformers references: ViT ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(16, 16), (24, 20)], ids=["trained-size", "interpolated-24x20"])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("case", IMAGE_CASES)
def test_converted_image_model_gives_the_reference_outputs(checkpoints, case, attn_implementation, size):
    reference, converted = load_pair(checkpoints, case, attn_implementation)
    pixels = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = main_output(reference(pixel_values=pixels, interpolate_pos_encoding=True))
        actual = main_output(converted(pixel_values=pixels, interpolate_pos_encoding=True))
    assert_close(actual, expected, **TOLERANCE)


def test_vit_checkpoint_round_trips_through_custom_transformer_to_identical_logits(tmp_path):
    config = tiny_reference_config("vit", num_labels=3)
    original = randomized(ViTForImageClassification(config)).eval()
    original.save_pretrained(tmp_path / "vit")
    convert(tmp_path / "vit", tmp_path / "custom")
    convert(tmp_path / "custom", tmp_path / "vit-again", to_family="vit")
    round_tripped = ViTForImageClassification.from_pretrained(tmp_path / "vit-again").eval()
    with torch.no_grad():
        assert_close(round_tripped(make_pixels()).logits, original(make_pixels()).logits, **EXACT)


def test_vit_preset_model_exports_to_a_vit_checkpoint_with_the_same_logits(tmp_path):
    custom = randomized(CustomTransformerForImageClassification(tiny_config("vit", num_labels=3))).eval()
    custom.save_pretrained(tmp_path / "custom")
    convert(tmp_path / "custom", tmp_path / "vit", to_family="vit")
    vit = ViTForImageClassification.from_pretrained(tmp_path / "vit").eval()
    with torch.no_grad():
        assert_close(vit(make_pixels()).logits, custom(make_pixels()).logits, **TOLERANCE)


def test_the_image_classification_pipeline_answers_the_same_for_the_converted_checkpoint(tmp_path):
    """transformers' own image processor (PIL backend: torchvision is not installed) is carried over by convert."""
    config = tiny_reference_config("vit", num_labels=3, id2label={0: "cat", 1: "dog", 2: "owl"})
    randomized(ViTForImageClassification(config)).save_pretrained(tmp_path / "vit")
    ViTImageProcessorPil(size={"height": 16, "width": 16}).save_pretrained(tmp_path / "vit")
    convert(tmp_path / "vit", tmp_path / "custom")
    images = [Image.fromarray(pixels) for pixels in np.random.default_rng(0).integers(0, 256, (3, 20, 24, 3), np.uint8)]
    expected = pipeline("image-classification", model=str(tmp_path / "vit"))(images, top_k=3)
    actual = pipeline("image-classification", model=str(tmp_path / "custom"), trust_remote_code=True)(images, top_k=3)
    assert [[answer["label"] for answer in image] for image in actual] == [
        [answer["label"] for answer in image] for image in expected
    ]
    assert_close(
        torch.tensor([[answer["score"] for answer in image] for image in actual]),
        torch.tensor([[answer["score"] for answer in image] for image in expected]),
        **TOLERANCE,
    )


# --- Llama export ------------------------------------------------------------------------------------------------


def test_llama_checkpoint_round_trips_through_custom_transformer_to_identical_logits(tmp_path):
    original = randomized(LlamaForCausalLM(tiny_reference_config("llama"))).eval()
    original.save_pretrained(tmp_path / "llama")
    convert(tmp_path / "llama", tmp_path / "custom")
    convert(tmp_path / "custom", tmp_path / "llama-again", to_family="llama")
    round_tripped = LlamaForCausalLM.from_pretrained(tmp_path / "llama-again").eval()
    input_ids, attention_mask = make_batch()
    with torch.no_grad():
        expected = original(input_ids, attention_mask=attention_mask).logits
        actual = round_tripped(input_ids, attention_mask=attention_mask).logits
    assert_close(actual, expected, **EXACT)


def test_llama_preset_model_exports_to_a_llama_checkpoint_with_the_same_logits_and_generations(tmp_path):
    custom = randomized(CustomTransformerForCausalLM(tiny_config("llama"))).eval()
    custom.save_pretrained(tmp_path / "custom")
    convert(tmp_path / "custom", tmp_path / "llama", to_family="llama")
    llama = LlamaForCausalLM.from_pretrained(tmp_path / "llama").eval()
    input_ids, attention_mask = make_batch()
    with torch.no_grad():
        expected = custom(input_ids, attention_mask=attention_mask).logits[attention_mask.bool()]
        actual = llama(input_ids, attention_mask=attention_mask).logits[attention_mask.bool()]
    assert_close(actual, expected, **TOLERANCE)
    settings = {"attention_mask": attention_mask, "max_new_tokens": 8, "do_sample": False}
    assert_close(llama.generate(input_ids, **settings), custom.generate(input_ids, **settings), **EXACT)


# --- the 2017 Transformer ----------------------------------------------------------------------------------------


def test_sinusoidal_positions_are_the_2017_paper_formula_on_both_sides(tmp_path):
    CustomTransformerSeq2SeqModel(tiny_config("vaswani")).save_pretrained(tmp_path)
    reloaded = CustomTransformerSeq2SeqModel.from_pretrained(tmp_path)  # the tables are rebuilt, not loaded
    for side in (reloaded.encoder, reloaded.decoder):
        assert_close(side.embed_positions.table, paper_sinusoids(TINY["max_position_embeddings"], 32), **TOLERANCE)


@pytest.mark.parametrize("padded", [False, True], ids=["unpadded", "padded"])
@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize(("activation", "bias"), [("relu", True), ("gelu", False)], ids=["relu-bias", "gelu-no-bias"])
def test_torch_transformer_encoder_and_converted_vaswani_model_agree(activation, bias, attn_implementation, padded):
    layer = nn.TransformerEncoderLayer(
        32, 4, 37, dropout=0.0, activation=activation, batch_first=True, norm_first=False, bias=bias
    )
    # The encoder's layers start as copies of `layer`: randomizing makes them differ.
    encoder = randomized(nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)).eval()
    embedding = nn.Embedding(TINY["vocab_size"], 32)
    model = from_torch_encoder(encoder, embedding, max_position_embeddings=64)
    model.set_attn_implementation(attn_implementation)
    input_ids, attention_mask = make_batch(padded, left_padding=False)
    with torch.no_grad():
        inputs = embedding(input_ids) * math.sqrt(32) + paper_sinusoids(input_ids.shape[1], 32)
        expected = encoder(inputs, src_key_padding_mask=attention_mask == 0)
        actual = model(input_ids, attention_mask=attention_mask).last_hidden_state
    real = attention_mask.bool()
    # torch's fused encoder kernel sums in another order than eager matmul + softmax: fp32 noise ~1e-5.
    assert_close(actual[real], expected[real], atol=3e-5, rtol=1e-4)
