"""The model's own reliability (issue 11): a save that a kill or a full disk cannot half-write, loading that refuses
damaged weights with the file and the fix, and token ids outside the vocabulary named before the embedding lookup.

Kills are injected between files (a subprocess whose writes are patched to SIGKILL it), not timed, so every point
of a save is reached on every run.
"""

import errno
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import transformers
from helpers.hub_server import HUB_TOKEN
from helpers.models import build, heads_for, make_inputs, tiny_config
from huggingface_hub import HfApi
from safetensors import SafetensorError
from torch.testing import assert_close
from transformers import PreTrainedConfig

from custom_transformer import (
    CustomTransformerForCausalLM,
    CustomTransformerForMaskedLM,
    CustomTransformerForSequenceClassification,
    CustomTransformerModel,
)
from custom_transformer.checkpoint_io import DamagedCheckpointError

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a training run keeps beside its final model, which a save of the model must not lose.
RUN_FILES = {
    "all_results.json": b'{"eval_loss": 1.5}',
    "eval_results.json": b'{"eval_loss": 1.5}',
    "checkpoint-4/trainer_state.json": b'{"global_step": 4}',
    "checkpoint-4/model.safetensors": b"weights of step 4",
    "checkpoint-8/trainer_state.json": b'{"global_step": 8}',
}


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


def new_model() -> CustomTransformerForCausalLM:
    """Other weights and another config than `build(CustomTransformerForCausalLM, "llama")`."""
    torch.manual_seed(1)
    return CustomTransformerForCausalLM(tiny_config("llama", initializer_range=0.05)).eval()


@pytest.fixture
def old_model() -> CustomTransformerForCausalLM:
    return build(CustomTransformerForCausalLM, "llama")


@pytest.fixture
def run_folder(tmp_path, old_model) -> Path:
    """A training run's folder: its final model (one safetensors file) beside its checkpoints and results."""
    folder = tmp_path / "run"
    old_model.save_pretrained(folder)
    for name, content in RUN_FILES.items():
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def assert_loads_as(folder: Path, model: CustomTransformerForCausalLM) -> None:
    loaded = CustomTransformerForCausalLM.from_pretrained(folder)
    assert loaded.config.initializer_range == model.config.initializer_range
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


# -- (1) saves: the old checkpoint or the new one, never a mix -----------------------------------------------------

KILLED_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import torch, transformers.modeling_utils
    from transformers import PreTrainedConfig
    from custom_transformer import CustomTransformerForCausalLM, checkpoint_io
    from helpers.models import tiny_config

    folder, point = sys.argv[1], sys.argv[2]
    kill = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
    write_config, write_weights, fsync_tree = PreTrainedConfig.to_json_file, transformers.modeling_utils.safe_save_file, checkpoint_io._fsync_tree
    written = []

    def weights_then_kill(*args, **kwargs):
        write_weights(*args, **kwargs)
        written.append(args[1])
        if len(written) == 2:
            kill()

    patches = {
        "before config": (PreTrainedConfig, "to_json_file", kill),
        "between config and weights": (PreTrainedConfig, "to_json_file", lambda *a, **k: (write_config(*a, **k), kill())),
        "before the first weights": (transformers.modeling_utils, "safe_save_file", kill),
        "between two shards": (transformers.modeling_utils, "safe_save_file", weights_then_kill),
        "after every file, before the swap": (checkpoint_io, "_fsync_tree", kill),
    }
    owner, name, replacement = patches[point]
    setattr(owner, name, replacement)
    torch.manual_seed(1)
    CustomTransformerForCausalLM(tiny_config("llama", initializer_range=0.05)).save_pretrained(folder, max_shard_size="20KB")
    print("the save finished: the kill point was never reached")
    """
)


@pytest.mark.parametrize(
    "point",
    [
        "before config",
        "between config and weights",
        "before the first weights",
        "between two shards",
        "after every file, before the swap",
    ],
)
def test_a_save_killed_between_files_leaves_the_old_checkpoint_exactly(run_folder, old_model, point):
    before = files_of(run_folder)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "tests")}
    process = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(run_folder), point], cwd=REPO_ROOT, env=env, capture_output=True
    )
    assert process.returncode == -9, process.stdout.decode() + process.stderr.decode()

    assert files_of(run_folder) == before
    assert_loads_as(run_folder, old_model)
    assert leftovers(run_folder) != []  # the killed save's staging folder, hidden beside the checkpoint

    new_model().save_pretrained(run_folder)  # the next save clears it away and lands whole
    assert leftovers(run_folder) == []
    assert_loads_as(run_folder, new_model())


def write_half_then_fail(write):
    """A write that runs out of disk half-way, as a full disk would make it."""

    def patched(*args, **kwargs):
        write(*args, **kwargs)
        path = Path(args[1])
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    return patched


@pytest.mark.parametrize("write", ["config", "weights"])
def test_a_save_onto_a_full_disk_leaves_the_old_checkpoint_loadable_and_identical(
    run_folder, old_model, write, monkeypatch
):
    if write == "config":
        monkeypatch.setattr(PreTrainedConfig, "to_json_file", write_half_then_fail(PreTrainedConfig.to_json_file))
    else:
        weights = transformers.modeling_utils.safe_save_file
        monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", write_half_then_fail(weights))
    before = files_of(run_folder)

    with pytest.raises(OSError, match=r"No space left on device"):
        new_model().save_pretrained(run_folder)

    assert files_of(run_folder) == before
    assert leftovers(run_folder) == []  # the failed save's staging folder is gone, and its space with it
    assert_loads_as(run_folder, old_model)


@pytest.fixture
def small_disk(tmp_path):
    """A real tmpfs of 640 KiB, mounted where `mount -t tmpfs` works (root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"no tmpfs here ({mounted.stderr.decode().strip()}): the patched full disk above covers this")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_save_onto_a_really_full_tmpfs_leaves_the_old_checkpoint(small_disk, old_model):
    folder = small_disk / "model"
    old_model.save_pretrained(folder)
    before = files_of(folder)
    torch.manual_seed(1)
    bigger = CustomTransformerForCausalLM(tiny_config("llama", vocab_size=4000))  # 1 MB of weights: never fits

    with pytest.raises((OSError, SafetensorError), match=r"No space left on device|StorageFull|os error 28"):
        bigger.save_pretrained(folder)

    assert files_of(folder) == before
    assert leftovers(folder) == []
    assert_loads_as(folder, old_model)


def test_a_save_into_a_run_folder_keeps_its_checkpoints_and_results(run_folder):
    new_model().save_pretrained(run_folder)
    files = files_of(run_folder)
    assert {name: files[name] for name in RUN_FILES} == RUN_FILES
    assert_loads_as(run_folder, new_model())


def test_stale_shards_of_an_earlier_sharded_save_disappear_after_a_single_file_save(tmp_path, old_model):
    old_model.save_pretrained(tmp_path / "model", max_shard_size="20KB")
    assert len(list((tmp_path / "model").glob("model-0000*-of-0000*.safetensors"))) > 2
    new_model().save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").glob("model*.safetensors*")) == ["model.safetensors"]
    assert_loads_as(tmp_path / "model", new_model())


@pytest.mark.parametrize(
    "head", [*heads_for("llama").values(), CustomTransformerForMaskedLM], ids=lambda head: head.__name__
)
def test_every_head_replaces_its_folder_in_one_step(tmp_path, head):
    preset = "bert" if head is CustomTransformerForMaskedLM else "llama"
    folder = tmp_path / "model"
    build(head, preset).save_pretrained(folder)
    inode = folder.stat().st_ino
    build(head, preset).save_pretrained(folder)
    assert folder.stat().st_ino != inode  # another folder took the name: the staging folder, now complete
    assert leftovers(folder) == []
    head.from_pretrained(folder)


def test_a_saved_folder_keeps_its_mode_or_gets_the_usual_one(tmp_path, old_model):
    (tmp_path / "made").mkdir()
    old_model.save_pretrained(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode == (tmp_path / "made").stat().st_mode  # not the staging folder's 0700
    (tmp_path / "new").chmod(0o750)
    new_model().save_pretrained(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o7777 == 0o750


def test_a_save_on_another_process_than_the_main_one_writes_nothing(run_folder):
    before, inode = files_of(run_folder), run_folder.stat().st_ino
    new_model().save_pretrained(run_folder, is_main_process=False)
    assert files_of(run_folder) == before and run_folder.stat().st_ino == inode
    assert leftovers(run_folder) == []


def test_a_save_through_a_symlink_replaces_the_folder_it_points_to(tmp_path, old_model):
    old_model.save_pretrained(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    new_model().save_pretrained(tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert_loads_as(tmp_path / "real", new_model())


def test_a_mount_point_is_saved_in_place_with_a_warning(run_folder, monkeypatch, caplog):
    """Its parent is another file system: no staging folder there could replace it in one step."""
    is_mount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == run_folder.resolve() or is_mount(path))
    inode = run_folder.stat().st_ino
    with caplog.at_level(logging.WARNING, logger="custom_transformer.modeling_custom_transformer"):
        new_model().save_pretrained(run_folder)
    assert f"Saving into {run_folder} file by file" in caplog.text
    assert run_folder.stat().st_ino == inode
    assert_loads_as(run_folder, new_model())


PUSH = textwrap.dedent(
    """
    import sys
    import torch
    from custom_transformer import CustomTransformerForCausalLM
    from helpers.models import tiny_config

    torch.manual_seed(1)
    model = CustomTransformerForCausalLM(tiny_config("llama", initializer_range=0.05))
    model.save_pretrained(sys.argv[1], push_to_hub=True, repo_id="org/tiny", commit_message="First")
    """
)


def test_push_to_hub_uploads_what_the_save_wrote(run_folder, hub, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub.url, HF_TOKEN=HUB_TOKEN, HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO_ROOT / "tests")
    )
    process = subprocess.run(
        [sys.executable, "-c", PUSH, str(run_folder)], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert process.returncode == 0, process.stderr

    commit = hub.repos["org/tiny"].resolve("main")
    local = files_of(run_folder)
    assert commit.message == "First"
    assert {"config.json", "model.safetensors", "checkpoint_io.py", "README.md"} <= commit.files.keys()
    assert {name: local[name] for name in commit.files} == commit.files  # the pushed files are the saved ones
    assert not commit.files.keys() & RUN_FILES.keys()  # files the save did not write are not uploaded, as before
    assert_loads_as(run_folder, new_model())


def test_push_to_hub_names_the_repo_after_the_folder_not_the_staging_folder(run_folder, old_model, monkeypatch):
    def create_repo(self, repo_id, **kwargs):
        raise ConnectionError(f"create_repo({repo_id!r})")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    before = files_of(run_folder)
    with pytest.raises(ConnectionError, match=re.escape("create_repo('run')")):
        new_model().save_pretrained(run_folder, push_to_hub=True)
    assert files_of(run_folder) == before  # a failed upload is a failed save: the folder keeps its checkpoint
    assert leftovers(run_folder) == []


# -- (2) token ids outside the vocabulary ---------------------------------------------------------------------------


@pytest.mark.parametrize(("bad_id", "low", "high"), [(99, 5, 99), (-1, -1, 13), (1000, 5, 1000)])
def test_token_ids_outside_the_vocabulary_are_named_with_vocab_size(bad_id, low, high):
    model = build(CustomTransformerForCausalLM, "llama")
    with pytest.raises(IndexError) as error:
        model(torch.tensor([[5, 7, 9], [11, bad_id, 13]]))
    assert str(error.value) == (
        f"input_ids hold token ids from {low} to {high}, but vocab_size is 99: every id must be in [0, 98]. "
        "Use the tokenizer the model was trained with (len(tokenizer) must not exceed config.vocab_size, or call "
        "model.resize_token_embeddings(len(tokenizer))), and keep label values such as -100 out of input_ids."
    )


def test_the_first_and_last_token_ids_pass():
    model = build(CustomTransformerForCausalLM, "llama")
    model(torch.tensor([[0, 98, 5]]))


def test_the_check_costs_no_graph_break_under_compile_fullgraph_or_export():
    model = build(CustomTransformerForCausalLM, "llama")
    input_ids, _ = make_inputs()
    expected = model(input_ids=input_ids, use_cache=False).logits
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # dynamo alone finds graph breaks, fast on CPU
    assert_close(compiled(input_ids=input_ids, use_cache=False).logits, expected)
    exported = torch.export.export(model, (), {"input_ids": input_ids, "use_cache": False})
    assert_close(exported.module()(input_ids=input_ids, use_cache=False).logits, expected)


# -- (3) loading refuses damaged weights ---------------------------------------------------------------------------


def flip_a_byte_of_a_tensor_name(weights: Path, name: str) -> str:
    """Change one letter of `name` inside the safetensors header (same length, still valid JSON); return the new name."""
    data = bytearray(weights.read_bytes())
    header_length = struct.unpack("<Q", data[:8])[0]
    start = data.index(f'"{name}"'.encode(), 8, 8 + header_length) + 1 + name.index("layers")
    data[start] = ord("L")
    weights.write_bytes(bytes(data))
    return name.replace("layers", "Layers", 1)


@pytest.fixture
def saved(tmp_path, old_model) -> Path:
    old_model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_a_flipped_byte_in_a_tensor_name_is_an_error_naming_the_tensor_and_the_file(saved):
    flipped = flip_a_byte_of_a_tensor_name(saved / "model.safetensors", "model.layers.1.mlp.up_proj.weight")
    with pytest.raises(DamagedCheckpointError) as error:
        CustomTransformerForCausalLM.from_pretrained(saved)
    assert str(error.value) == (
        f"{saved}/model.safetensors lacks weights that CustomTransformerForCausalLM expects: "
        f"model.layers.1.mlp.up_proj.weight; it holds {flipped} instead, which nothing reads. Loading would fill "
        "them at random: the checkpoint is damaged or belongs to another model; copy the checkpoint again, or save "
        "it again from a model that loads (ignore_mismatched_sizes=True initialises them at random on purpose)."
    )
    with pytest.raises(DamagedCheckpointError, match=r"expects: layers\.1\.mlp\.up_proj\.weight;"):
        CustomTransformerModel.from_pretrained(saved)  # the backbone alone, from a causal-LM checkpoint
    with pytest.raises(DamagedCheckpointError, match=r"expects: model\.layers\.1\.mlp\.up_proj\.weight;"):
        transformers.AutoModelForSequenceClassification.from_pretrained(saved)  # a new head, a damaged backbone


def test_the_error_names_the_shard_that_should_hold_the_tensor(tmp_path, old_model):
    old_model.save_pretrained(tmp_path / "model", max_shard_size="20KB")
    index = json.loads((tmp_path / "model" / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.layers.0.self_attn.q_proj.weight"]
    flip_a_byte_of_a_tensor_name(tmp_path / "model" / shard, "model.layers.0.self_attn.q_proj.weight")
    with pytest.raises(DamagedCheckpointError, match=rf"^{re.escape(str(tmp_path / 'model' / shard))} lacks weights"):
        CustomTransformerForCausalLM.from_pretrained(tmp_path / "model")


def test_a_head_the_checkpoint_had_must_load_too(tmp_path):
    build(CustomTransformerForSequenceClassification, "llama").save_pretrained(tmp_path / "classifier")
    weights = tmp_path / "classifier" / "model.safetensors"
    weights.write_bytes(weights.read_bytes().replace(b'"score.weight"', b'"scoRe.weight"', 1))
    with pytest.raises(DamagedCheckpointError, match=r"expects: score\.weight; it holds scoRe\.weight instead"):
        CustomTransformerForSequenceClassification.from_pretrained(tmp_path / "classifier")


def test_asking_for_random_weights_on_purpose_still_loads(saved):
    flip_a_byte_of_a_tensor_name(saved / "model.safetensors", "model.layers.1.mlp.up_proj.weight")
    CustomTransformerForCausalLM.from_pretrained(saved, ignore_mismatched_sizes=True)


def test_a_caller_that_asks_for_the_loading_info_gets_the_missing_keys_to_judge(saved):
    """As transformers' own test suite and `custom_transformer.convert` do: the report is theirs to act on."""
    flip_a_byte_of_a_tensor_name(saved / "model.safetensors", "model.layers.1.mlp.up_proj.weight")
    model, info = CustomTransformerForCausalLM.from_pretrained(saved, output_loading_info=True)
    assert set(info["missing_keys"]) == {"model.layers.1.mlp.up_proj.weight"}
    assert set(info["unexpected_keys"]) == {"model.Layers.1.mlp.up_proj.weight"}


def test_weights_handed_over_in_memory_are_the_callers_and_what_they_lack_is_initialised(old_model):
    """transformers' loading contract for `state_dict=`: only files are judged damaged, a dict is what the caller chose."""
    partial = {k: v for k, v in old_model.state_dict().items() if ".layers.1." not in k}
    config = old_model.config
    model = CustomTransformerForCausalLM.from_pretrained(None, config=config, state_dict=partial)
    assert_close(model.model.layers[0].mlp.up_proj.weight, old_model.model.layers[0].mlp.up_proj.weight)
    assert not any(p.is_meta for p in model.parameters())
    empty = CustomTransformerForCausalLM.from_pretrained(None, config=config, state_dict={})
    assert empty.model.layers[1].mlp.up_proj.weight.std() > 0  # initialised, as by __init__


def test_a_new_head_on_a_checkpoint_that_never_had_one_is_initialised(saved, old_model):
    classifier = CustomTransformerForSequenceClassification.from_pretrained(saved, num_labels=3)
    assert classifier.score.weight.shape == (3, 32) and classifier.score.weight.abs().sum() > 0
    assert_close(classifier.model.layers[1].mlp.up_proj.weight, old_model.model.layers[1].mlp.up_proj.weight)

    build(CustomTransformerModel, "llama").save_pretrained(saved.parent / "backbone")
    lm = CustomTransformerForCausalLM.from_pretrained(saved.parent / "backbone")  # an untied lm_head: new
    assert lm.lm_head.weight.abs().sum() > 0

    build(CustomTransformerModel, "bert").save_pretrained(saved.parent / "encoder")
    masked_lm = CustomTransformerForMaskedLM.from_pretrained(saved.parent / "encoder")  # new, but for its tied decoder
    assert masked_lm.lm_head.decoder.weight is masked_lm.model.embed_tokens.weight


def test_a_truncated_weights_file_is_named_with_the_fix(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(DamagedCheckpointError) as error:
        CustomTransformerForCausalLM.from_pretrained(saved)
    assert str(error.value) == (
        f"{weights} is truncated or corrupt (SafetensorError: Error while deserializing header: incomplete "
        "metadata, file not fully covered): copy the checkpoint again, or save it again from a model that loads."
    )
    assert isinstance(error.value, SafetensorError)  # what callers that named safetensors' own error still catch


def test_a_damaged_checkpoint_through_the_auto_classes_and_remote_code(saved, tmp_path):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    shutil.copytree(saved, tmp_path / "remote")
    with pytest.raises(SafetensorError, match=rf"^{re.escape(str(tmp_path / 'remote' / 'model.safetensors'))} is"):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "remote", trust_remote_code=True)
