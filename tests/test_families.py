"""The families table: every preset is a family, and each row's references and conversions are the ones used."""

import pytest
from helpers.models import tiny_family_config

from custom_transformer import PRESETS
from custom_transformer.convert import EXPORTS, IMPORTS
from custom_transformer.families import FAMILIES


def test_every_preset_is_a_family_and_every_family_a_preset():
    assert set(FAMILIES) == set(PRESETS)
    assert all(name == family.preset for name, family in FAMILIES.items())


def test_the_conversions_of_convert_are_the_families_rows():
    assert {name: family.imports for name, family in FAMILIES.items() if family.imports} == IMPORTS
    assert {name: family.exports for name, family in FAMILIES.items() if family.exports} == EXPORTS


@pytest.mark.parametrize("name", [name for name, family in FAMILIES.items() if family.reference])
def test_a_reference_config_builds_the_reference_class_at_our_sizes(name):
    family = FAMILIES[name]
    config = tiny_family_config(name)
    reference = family.reference(family.reference_config(config))
    assert getattr(reference.config, "vocab_size", 0) == config.vocab_size  # ViT reads no tokens
    assert reference.config.num_hidden_layers == config.num_hidden_layers
