"""Fixtures and session set-up: offline, a private Hugging Face cache, the presets as parameters, the loopback Hub.

The helpers the tests import (tiny configs, data, runners) live in the `helpers` package next to this file.
"""

import os
import tempfile

# Before transformers / datasets / huggingface_hub are imported anywhere: no hub, private caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="ct-hf-home-")

import pytest  # noqa: E402
from helpers.hub_server import HUB_TOKEN  # noqa: E402
from helpers.models import DECODER_PRESETS, PRESET_NAMES  # noqa: E402


@pytest.fixture(params=PRESET_NAMES)
def preset(request) -> str:
    return request.param


@pytest.fixture(params=DECODER_PRESETS)
def decoder_preset(request) -> str:
    return request.param


# --- the loopback Hub (tests/helpers/hub_server.py) -----------------------------------------------------------------


@pytest.fixture
def hub():
    """A Hub-API server on 127.0.0.1 that accepts `HUB_TOKEN`, for pushes and pulls through huggingface_hub."""
    from helpers.hub_server import HubServer

    with HubServer(token=HUB_TOKEN) as server:
        yield server


@pytest.fixture
def online(monkeypatch):
    """This process talks to the loopback hub although the test session is offline (see the top of this file)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
