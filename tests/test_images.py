"""Images in: the patch front-end (ViT), its positions at other image sizes, and the errors that name the fix."""

import pytest
import torch
from helpers.models import build, make_pixels, tiny_config
from torch.testing import assert_close

from custom_transformer import CustomTransformerConfig, CustomTransformerForImageClassification, CustomTransformerModel


def test_an_image_is_read_as_a_cls_vector_then_one_vector_per_patch_in_row_order():
    model = build(CustomTransformerModel, "vit", num_hidden_layers=1)
    pixels = make_pixels(batch=1)
    embedded = model.embed_patches(pixels)
    patches = model.embed_patches.projection.weight.flatten(1) @ pixels[0, :, 4:8, 0:4].flatten()
    first_of_second_row = patches + model.embed_patches.projection.bias  # patch (1, 0) is the 5th of 16
    positions = model.embed_patches.positions.weight[0]
    assert embedded.shape == (1, 17, 32)
    assert_close(embedded[0, 0], model.embed_patches.cls_token[0, 0] + positions[0])
    assert_close(embedded[0, 5], first_of_second_row + positions[5])


def test_interpolating_positions_changes_nothing_at_the_trained_size_and_reads_other_sizes():
    model = build(CustomTransformerForImageClassification, "vit", num_labels=3)
    pixels = make_pixels()
    assert_close(model(pixels, interpolate_pos_encoding=True).logits, model(pixels).logits, atol=0.0, rtol=0.0)
    larger = torch.randn(2, 3, 24, 20)
    assert model(larger, interpolate_pos_encoding=True).logits.shape == (2, 3)
    with pytest.raises(ValueError, match=r"24x20 images, but the model was built for 16x16 .*interpolate_pos_encoding"):
        model(larger)


def test_without_learned_patch_positions_any_image_size_is_read():
    model = build(CustomTransformerModel, "vit", position_embedding_type="rope")
    assert not hasattr(model.embed_patches.positions, "weight")
    assert model(pixel_values=torch.randn(1, 3, 8, 12)).last_hidden_state.shape == (1, 1 + 2 * 3, 32)


def test_images_with_another_channel_count_are_refused_naming_num_channels_and_the_processor():
    model = build(CustomTransformerModel, "vit")
    with pytest.raises(ValueError, match=r"1 channels, but config.num_channels is 3: .*AutoImageProcessor"):
        model(pixel_values=torch.randn(2, 1, 16, 16))


def test_pixel_values_in_another_dtype_are_cast_to_the_weights_dtype():
    model = build(CustomTransformerModel, "vit").to(torch.bfloat16)
    assert model(pixel_values=make_pixels()).last_hidden_state.dtype == torch.bfloat16


def test_non_square_images_and_patches_are_given_as_height_width_pairs():
    config = tiny_config("vit", image_size=[8, 16], patch_size=[4, 8])
    model = CustomTransformerModel(config).eval()
    assert model(pixel_values=torch.randn(1, 3, 8, 16)).last_hidden_state.shape == (1, 1 + 2 * 2, 32)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patch_size": 32}, "patch_size=32 is larger than image_size=16"),
        ({"image_size": [16]}, r"image_size=\[16\] must be a positive integer or a \[height, width\] pair"),
        ({"num_channels": 0}, "num_channels=0 must be a positive integer"),
        ({"is_decoder": True}, "reads a whole image at once: set is_decoder=False"),
    ],
)
def test_image_settings_that_cannot_work_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config("vit", **overrides)


def test_an_image_config_needs_no_vocabulary():
    assert CustomTransformerConfig.from_preset("vit").vocab_size == 0
    assert not hasattr(build(CustomTransformerModel, "vit"), "embed_tokens")
