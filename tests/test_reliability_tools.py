"""The tools that write models (`model_cards export`, `custom_transformer.convert`) under faults a user meets.

A kill is injected between two steps of the write (not timed): a subprocess replaces one function of the tool by
one that SIGKILLs its own process, before or after the real call. Afterwards the destination holds the previous
output or the new one, complete, and the next run of the tool clears what the killed one left beside it. Damaged
weights (truncated, garbage, one changed byte in a tensor name) are refused with one line that names the file and
the fix, before anything is written.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.models import tiny_reference_config
from helpers.tiny_run import build_tiny_run
from transformers import GPT2LMHeadModel

from custom_transformer.checkpoint_io import DamagedCheckpointError
from custom_transformer.convert import convert
from custom_transformer.convert import main as convert_main
from model_cards import check_checkpoint, export_run

REPO_ROOT = Path(__file__).resolve().parents[1]
FIX = "copy the checkpoint again, or save it again from a model that loads"

# Run as `python -c KILLER POINT MODULE ARGS...`: patch the step named POINT to SIGKILL, then run MODULE's main. The
# swap points act on the swap into the tool's destination only, not on one of a `save_pretrained` that replaces the
# tool's staging folder (a hidden sibling) the same way.
KILLER = """
import os, signal, sys
from custom_transformer import checkpoint_io

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def at_the_destination(step):
    exchange = checkpoint_io._exchange
    checkpoint_io._exchange = lambda a, b: step(a, b) if not os.path.basename(b).startswith(".") else exchange(a, b)

def second_rename_killed(source, target):
    os.rename = killed
    rename(source, target)

def no_exchange(a, b):  # a system without renameat2: rename the old folder away, then the new one in
    os.rename = second_rename_killed
    return False

point, module, rename = sys.argv[1], __import__(sys.argv[2], fromlist=["main"]), os.rename
if point == "before the swap":
    at_the_destination(killed)
elif point == "after the swap":
    exchange = checkpoint_io._exchange
    at_the_destination(lambda a, b: exchange(a, b) and killed())
elif point == "between the fallback renames":
    at_the_destination(no_exchange)
else:  # while writing: a function of the tool itself, called between two files
    module_name, function = point.rsplit(".", 1)
    setattr(__import__(module_name, fromlist=[function]), function, killed)
module.main(sys.argv[3:])
"""


def run_killed(point: str, module: str, *args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", KILLER, point, module, *map(str, args)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)


def run_cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path) -> None:
    path.write_bytes(b"\0" * 64)


def change_tensor_name(path: Path, name: str, changed: str) -> None:
    """Rewrite one tensor name inside the safetensors header in place; the header keeps its length."""
    assert len(name) == len(changed)
    data = bytearray(path.read_bytes())
    start = data.index(f'"{name}"'.encode(), 8, 8 + int.from_bytes(data[:8], "little")) + 1
    data[start : start + len(name)] = changed.encode()
    path.write_bytes(bytes(data))


# -- model_cards export ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_tiny_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def exports(run_dir, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """The files of the export a test starts from ("old") and of the one it then makes ("new")."""
    folder = tmp_path_factory.mktemp("exports")
    return {
        age: files_of(export_run(run_dir, folder / "export", overwrite=True, repo_id=f"org/{age}"))
        for age in ("old", "new")
    }


@pytest.fixture
def old_export(exports, tmp_path) -> Path:
    """tmp_path/export holding the "old" export, alone in tmp_path."""
    folder = tmp_path / "export"
    folder.mkdir()
    for name, content in exports["old"].items():
        (folder / name).write_bytes(content)
    return folder


def copy_of_run(run_dir: Path, tmp_path: Path) -> Path:
    return shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))


@pytest.mark.parametrize(
    ("point", "left"),
    [
        ("model_cards.export.write_model_card", "old"),  # model and tokenizer written, the card not
        ("before the swap", "old"),
        ("after the swap", "new"),  # the old export still beside it, not yet removed
        ("between the fallback renames", None),  # the old export moved beside it, the new one not yet in
    ],
)
def test_an_export_killed_at_any_step_leaves_the_old_export_or_the_new_one(run_dir, exports, old_export, point, left):
    tmp_path = old_export.parent
    command = ("export", "--run_dir", run_dir, "--to", old_export, "--overwrite", "--hub_model_id", "org/new")

    killed = run_killed(point, "model_cards.__main__", *command)

    assert killed.returncode == -9, killed.stderr
    if left is None:  # only without renameat2: the next export (or save) through checkpoint_io puts it back first
        assert not old_export.exists()
        (aside,) = tmp_path.glob(".export.old-*")
        assert files_of(aside) == exports["old"]
    else:
        assert files_of(old_export) == exports[left]
    with pytest.raises(FileExistsError, match="is not empty: pass --overwrite"):
        export_run(run_dir, old_export)  # the next export, even one that refuses, clears what the kill left
    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert files_of(old_export) == exports[left or "old"]

    export_run(run_dir, old_export, overwrite=True, repo_id="org/new")
    assert files_of(old_export) == exports["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_what_an_export_killed_by_an_earlier_release_or_inside_save_pretrained_left_is_cleared(
    run_dir, exports, old_export
):
    tmp_path = old_export.parent
    old_export.rename(tmp_path / ".export.previous-1a2b3c")  # what the two-rename export left
    (tmp_path / ".export.partial-1a2b3c").mkdir()
    (tmp_path / "..export.saving-4d5e6f.saving-7a8b9c").mkdir()  # a killed save_pretrained into the staging folder

    with pytest.raises(FileExistsError, match="is not empty: pass --overwrite"):
        export_run(run_dir, old_export)

    assert [p.name for p in tmp_path.iterdir()] == ["export"]
    assert files_of(old_export) == exports["old"]


def test_an_export_holds_exactly_the_exported_files(run_dir, exports, old_export):
    (old_export / "notes.txt").write_text("not part of the new export")
    export_run(run_dir, old_export, overwrite=True, repo_id="org/new")
    assert files_of(old_export) == exports["new"]


@pytest.mark.parametrize("damage", [truncate, garble])
def test_damaged_weights_are_named_with_the_fix_by_export_and_card(run_dir, exports, old_export, damage):
    run = copy_of_run(run_dir, old_export.parent)
    damage(run / "model.safetensors")

    exported = run_cli("model_cards", "export", "--run_dir", run, "--to", old_export, "--overwrite")
    carded = run_cli("model_cards", "--run_dir", run, "--output_dir", old_export.parent / "card")

    for result in (exported, carded):
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()[-1:]
        assert line.startswith(f"error: {run}/model.safetensors is truncated or corrupt (SafetensorError: Error while")
        assert line.endswith(f"): {FIX}.")
    assert files_of(old_export) == exports["old"]
    assert not (old_export.parent / "card").exists()


def test_a_changed_byte_in_a_tensor_name_is_refused_naming_the_unknown_and_the_missing_tensor(
    run_dir, exports, old_export
):
    run = copy_of_run(run_dir, old_export.parent)
    name = "model.layers.0.self_attn.q_proj.weight"
    change_tensor_name(run / "model.safetensors", name, name.replace("q_proj", "p_proj"))  # 'q' ^ 1 == 'p'

    with pytest.raises(DamagedCheckpointError) as refused:
        export_run(run, old_export, overwrite=True)

    assert str(refused.value) == (
        f"{run}/model.safetensors lacks weights that CustomTransformerForSequenceClassification expects: "
        "model.layers.0.self_attn.q_proj.weight; it holds model.layers.0.self_attn.p_proj.weight instead, which "
        "nothing reads. Loading would fill them at random: the checkpoint is damaged or belongs to another model; "
        f"{FIX}."
    )
    assert files_of(old_export) == exports["old"]
    assert sorted(p.name for p in old_export.parent.iterdir()) == ["export", "run"]


@pytest.mark.parametrize("damage", [truncate, garble])
def test_a_hub_folder_with_damaged_weights_is_refused_by_check_and_push(old_export, damage):
    damage(old_export / "model.safetensors")

    with pytest.raises(DamagedCheckpointError, match=rf"^{old_export}/model.safetensors is truncated or corrupt \("):
        check_checkpoint(old_export)
    pushed = run_cli("model_cards", "push", "--folder", old_export, "--hub_model_id", "org/name")

    assert pushed.returncode == 1
    assert pushed.stderr.startswith(f"error: {old_export}/model.safetensors is truncated or corrupt (")
    assert pushed.stderr.endswith(f"): {FIX}.\n")
    assert "\n" not in pushed.stderr.rstrip("\n")


# -- custom_transformer.convert ----------------------------------------------------------------------------------


def gpt2_checkpoint(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    GPT2LMHeadModel(tiny_reference_config("gpt2")).save_pretrained(folder)
    return folder


@pytest.fixture
def converted(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """tmp_path/out holding the conversion of one GPT-2 checkpoint, and its files."""
    convert(gpt2_checkpoint(tmp_path / "first", seed=0), tmp_path / "out")
    return tmp_path / "out", files_of(tmp_path / "out")


@pytest.mark.parametrize("point", ["custom_transformer.convert._save_processors", "before the swap"])
def test_a_conversion_killed_before_the_swap_leaves_the_previous_conversion(tmp_path, converted, point):
    out, before = converted
    second = gpt2_checkpoint(tmp_path / "second", seed=1)

    killed = run_killed(point, "custom_transformer.convert", "--from", second, "--to", out)

    assert killed.returncode == -9, killed.stderr
    assert files_of(out) == before
    (tmp_path / "..out.saving-4d5e6f.saving-7a8b9c").mkdir()  # what a save_pretrained killed inside it leaves
    convert(second, out)  # the next conversion clears what the killed one left
    assert files_of(out) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "out", "second"]


def test_a_conversion_killed_after_the_swap_leaves_the_new_conversion_complete(tmp_path, converted):
    out, before = converted
    second = gpt2_checkpoint(tmp_path / "second", seed=1)

    killed = run_killed("after the swap", "custom_transformer.convert", "--from", second, "--to", out)

    assert killed.returncode == -9, killed.stderr
    after = files_of(out)
    convert(second, tmp_path / "reference")
    assert after == files_of(tmp_path / "reference")
    convert(second, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "out", "reference", "second"]


@pytest.mark.parametrize("damage", [truncate, garble])
def test_a_damaged_source_is_named_with_the_fix_and_nothing_is_converted(tmp_path, converted, damage):
    out, before = converted
    second = gpt2_checkpoint(tmp_path / "second", seed=1)
    damage(second / "model.safetensors")

    with pytest.raises(SystemExit) as refused:
        convert_main(["--from", str(second), "--to", str(out)])

    assert str(refused.value).startswith(
        f"error: {second}/model.safetensors is truncated or corrupt (SafetensorError: Error while "
    )
    assert str(refused.value).endswith("): copy the checkpoint again, or save it again from a model that loads.")
    assert "\n" not in str(refused.value)
    assert files_of(out) == before


def test_a_changed_byte_in_a_source_tensor_name_is_refused_not_converted_at_random(tmp_path, converted):
    out, before = converted
    second = gpt2_checkpoint(tmp_path / "second", seed=1)
    name = "transformer.h.0.mlp.c_fc.weight"
    change_tensor_name(second / "model.safetensors", name, name.replace("c_fc", "c_fb"))

    with pytest.raises(SystemExit) as refused:
        convert_main(["--from", str(second), "--to", str(out)])

    assert str(refused.value) == (
        f"error: {second}/model.safetensors lacks weights that GPT2LMHeadModel expects: "
        "transformer.h.0.mlp.c_fc.weight; it holds transformer.h.0.mlp.c_fb.weight instead, which nothing reads. "
        "Loading would fill them at random: the checkpoint is damaged or belongs to another model; copy the "
        "checkpoint again, or save it again from a model that loads."
    )
    assert files_of(out) == before


def test_convert_names_a_missing_source_and_a_target_that_is_a_file(tmp_path):
    (tmp_path / "a-file").write_text("{}")
    missing = run_cli("custom_transformer.convert", "--from", tmp_path / "missing", "--to", tmp_path / "out")
    onto_file = run_cli("custom_transformer.convert", "--from", tmp_path, "--to", tmp_path / "a-file")

    assert (missing.returncode, missing.stderr) == (
        1,
        f"error: {tmp_path / 'missing'} is not a folder: pass the checkpoint folder to convert.\n",
    )
    assert (onto_file.returncode, onto_file.stderr) == (
        1,
        f"error: {tmp_path / 'a-file'} exists and is not a folder: pass a folder to write the checkpoint to.\n",
    )
    assert (tmp_path / "a-file").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
