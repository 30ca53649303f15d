"""Push to and pull from a Hub endpoint with the real huggingface_hub and transformers clients.

The endpoint is the loopback server of `helpers/hub_server.py`; the CLI push and the pull run in fresh processes
that see it through HF_ENDPOINT (read when huggingface_hub is imported) and a private HF_HOME. The pull
process runs the load snippet of the pushed card, pinned to the pushed commit, and cannot import
custom_transformer, so the model must load from the code in the repository.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.hub_server import HUB_TOKEN as TOKEN
from helpers.hub_server import HubServer
from helpers.tiny_run import build_tiny_run
from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from model_cards import HubUnreachableError, IncompleteCheckpointError, check_checkpoint, export_run, push_to_hub
from training.tasks import PROCESSORS

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["good film", "the plot was very bad not good", "a story"]
PULL = """
import json, re, runpy, sys

runpy.run_path(BLOCKER)  # `import custom_transformer` fails: the checkpoint must bring its own code
import torch
from huggingface_hub import hf_hub_download

repo_id, revision, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
card = open(hf_hub_download(repo_id, "README.md", revision=revision)).read()
snippet = re.search(r"```python\\n(.*?)```", card, re.DOTALL).group(1)
assert 'revision = "main"' in snippet
namespace = {}
exec(snippet.replace('revision = "main"', f'revision = "{revision}"'), namespace)  # the card's own load code
model, tokenizer = namespace["model"], namespace["tokenizer"]
with torch.no_grad():
    logits = model.eval()(**tokenizer(texts, return_tensors="pt", padding=True)).logits
print(json.dumps({"module": type(model).__module__, "logits": logits.tolist()}))
""".replace("BLOCKER", repr(str(REPO_ROOT / "training" / "without_package.py")))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_tiny_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    return export_run(run_dir, tmp_path_factory.mktemp("export") / "tiny", repo_id="org/tiny")


def hub_env(hub: HubServer, hf_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN, "HF_HOME": str(hf_home)}


def test_pushed_export_loads_by_commit_with_the_cards_own_snippet_without_the_package(run_dir, hub, tmp_path):
    push = subprocess.run(
        [sys.executable, "-m", "model_cards", "export", "--run_dir", str(run_dir), "--to", str(tmp_path / "tiny")]
        + ["--push_to_hub", "--hub_model_id", "org/tiny", "--commit_message", "First release"],
        cwd=REPO_ROOT,
        env=hub_env(hub, tmp_path / "hf-push"),
        capture_output=True,
        text=True,
    )
    assert push.returncode == 0, push.stderr
    sha = push.stdout.split("at commit ")[1].split()[0]

    repo = hub.repos["org/tiny"]
    assert len(repo.commits) == 2, "one commit on top of the repo's initial one"
    assert repo.commits[sha].message == "First release"
    local_files = {p.name: p.read_bytes() for p in (tmp_path / "tiny").iterdir()}
    assert repo.commits[sha].files == local_files

    pull = subprocess.run(
        [sys.executable, "-c", PULL, "org/tiny", sha, json.dumps(TEXTS)],
        cwd=tmp_path,
        env=hub_env(hub, tmp_path / "hf-pull"),
        capture_output=True,
        text=True,
    )
    assert pull.returncode == 0, pull.stderr
    remote = json.loads(pull.stdout.splitlines()[-1])
    assert remote["module"].startswith(f"transformers_modules.org.tiny.{sha}")

    local = AutoModelForSequenceClassification.from_pretrained(tmp_path / "tiny", trust_remote_code=True).eval()
    batch = AutoTokenizer.from_pretrained(tmp_path / "tiny")(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(torch.tensor(remote["logits"]), local(**batch).logits)


def test_each_push_is_one_commit_whose_sha_pins_it(exported, hub, online, tmp_path):
    first = push_to_hub(exported, "org/tiny", token=TOKEN, endpoint=hub.url)
    changed = shutil.copytree(exported, tmp_path / "tiny")
    with (changed / "README.md").open("a") as card:
        card.write("\nSecond release.\n")
    second = push_to_hub(changed, "org/tiny", token=TOKEN, endpoint=hub.url, revision="v2")

    repo = hub.repos["org/tiny"]
    assert repo.branches == {"main": first, "v2": second}
    assert len(repo.commits) == 3
    assert repo.commits[first].files == {p.name: p.read_bytes() for p in exported.iterdir()}
    assert repo.commits[second].files["README.md"].endswith(b"Second release.\n")


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "modeling_custom_transformer.py", "README.md"])
def test_incomplete_checkpoint_is_refused_before_any_request(exported, hub, online, tmp_path, missing):
    folder = shutil.copytree(exported, tmp_path / "tiny")
    (folder / missing).unlink()

    with pytest.raises(IncompleteCheckpointError, match=rf"{re.escape(missing)} .*is missing"):
        push_to_hub(folder, "org/tiny", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_hand_edited_code_is_refused_before_any_request(exported, hub, online, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "tiny")
    modeling = folder / "modeling_custom_transformer.py"
    modeling.write_text(modeling.read_text().replace("self.head_dim**-0.5", "self.head_dim**-0.4"))

    with pytest.raises(IncompleteCheckpointError, match=r"NOT verified: .*modeling_custom_transformer.py differs"):
        push_to_hub(folder, "org/tiny", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_card_without_results_is_refused_before_any_request(exported, hub, online, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "tiny")
    (folder / "README.md").write_text("---\nlicense: cc0-1.0\nlibrary_name: transformers\n---\n\n# tiny\n")

    with pytest.raises(IncompleteCheckpointError, match="no evaluation results"):
        push_to_hub(folder, "org/tiny", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_training_state_in_the_folder_is_refused(exported, hub, online, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "tiny")
    (folder / "optimizer.pt").write_bytes(b"state")

    with pytest.raises(IncompleteCheckpointError, match="optimizer.pt is not part of a hub checkpoint"):
        push_to_hub(folder, "org/tiny", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_unreachable_endpoint_raises_a_clear_error(exported, online):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(HubUnreachableError, match=f"Cannot reach the Hub at http://127.0.0.1:{port}"):
        push_to_hub(exported, "org/tiny", token=TOKEN, endpoint=f"http://127.0.0.1:{port}")


def test_offline_mode_refuses_to_push(exported, hub, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE=1 is set"):
        push_to_hub(exported, "org/tiny", token=TOKEN, endpoint=hub.url)
    assert hub.requests == []


def test_rejected_token_leaves_nothing_on_the_hub(exported, hub, online):
    with pytest.raises(HfHubHTTPError, match="401"):
        push_to_hub(exported, "org/tiny", token="hf_wrong_token", endpoint=hub.url)
    assert hub.repos == {}


# --- what prepares the inputs: a tokenizer for text, an image processor for images (training.tasks.PROCESSORS) ------


def without_tokenizer(exported: Path, folder: Path) -> Path:
    shutil.copytree(exported, folder)
    for pattern in PROCESSORS["tokenizer"].files:
        for path in folder.glob(pattern):
            path.unlink()
    return folder


def test_a_folder_whose_processor_is_an_image_processor_is_complete(exported, tmp_path):
    from transformers import ViTImageProcessorPil

    folder = without_tokenizer(exported, tmp_path / "tiny")
    ViTImageProcessorPil().save_pretrained(folder)
    assert "preprocessor_config.json" in check_checkpoint(folder)
    assert "preprocessor_config.json" in check_checkpoint(folder, processor=PROCESSORS["image_processor"])


def test_a_folder_without_a_processor_is_refused_naming_each_kind(exported, tmp_path):
    folder = without_tokenizer(exported, tmp_path / "tiny")
    with pytest.raises(IncompleteCheckpointError) as refused:
        check_checkpoint(folder)
    assert (
        "- tokenizer_config.json or preprocessor_config.json is missing: save the tokenizer or image processor or "
        "feature extractor with the model." in str(refused.value)
    )


def test_a_task_that_reads_text_needs_a_tokenizer_not_an_image_processor(exported, tmp_path):
    from transformers import ViTImageProcessorPil

    folder = without_tokenizer(exported, tmp_path / "tiny")
    ViTImageProcessorPil().save_pretrained(folder)
    with pytest.raises(IncompleteCheckpointError, match="tokenizer_config.json is missing: save the tokenizer with"):
        check_checkpoint(folder, processor=PROCESSORS["tokenizer"])


def test_sentencepiece_models_are_part_of_a_hub_checkpoint(exported, tmp_path):
    folder = shutil.copytree(exported, tmp_path / "tiny")
    (folder / "source.spm").write_bytes(b"sentencepiece model")
    assert "source.spm" in check_checkpoint(folder)
