"""`python -m custom_transformer.refresh`: repair the code inside checkpoints that are already saved or published.

A checkpoint runs the code it carries, not the installed package. tests/fixtures/checkpoint-3cf6f23 was saved
by the last release before the transformers 5.24 fix (5.24 renamed the cache keyword the model receives), so
under 5.24 its cached generation silently goes wrong. Refreshing replaces its code files by the installed
package's, stamps config.json with the code version, and leaves the weights byte-identical.

Every load here happens in a fresh interpreter where `import custom_transformer` fails
(tests/helpers/generate_without_package.py), as on a machine without the package: the checkpoint's own code
is what runs. The expected code files are what a fresh `save_pretrained` of the installed package writes,
never a hard-coded list.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import transformers
from helpers.hub_server import HUB_TOKEN as TOKEN
from helpers.hub_server import HubServer
from helpers.models import tiny_config
from huggingface_hub import CommitOperationAdd, HfApi, constants
from packaging import version

import custom_transformer.refresh as refresh
from custom_transformer import CustomTransformerForCausalLM
from custom_transformer.configuration_custom_transformer import CODE_VERSION

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-3cf6f23"
RUNNER = Path(__file__).parent / "helpers" / "generate_without_package.py"
# Left padding (pad_token_id 0) in the first row: the case where a cache that is silently dropped shows.
BATCH = {
    "input_ids": [[0, 0, 0, 5, 17, 33, 41], [8, 12, 9, 60, 23, 7, 44]],
    "attention_mask": [[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]],
    "max_new_tokens": 12,
}
CACHE_RENAME_RELEASE = "5.24.0"


# -- helpers ---------------------------------------------------------------------------------------------------


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


def code_of(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: content for name, content in files.items() if name.endswith(".py")}


def without_code_keys(config: dict) -> dict:
    return {key: value for key, value in config.items() if key not in ("auto_map", "code_version")}


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This session's environment with a private HF_HOME (its own transformers_modules cache)."""
    return {**os.environ, "HF_HOME": str(tmp_path / "hf-home"), **extra}


def hub_env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in env_for(tmp_path).items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN}


def run_refresh(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "custom_transformer.refresh", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def generate_without_package(checkpoint: str | Path, tmp_path: Path, env: dict, revision: str | None = None) -> dict:
    """Logits and greedy continuations (dynamic cache, static cache, no cache) in a process without the package."""
    inputs, result = tmp_path / "inputs.json", tmp_path / "generated.json"
    inputs.write_text(json.dumps(BATCH))
    command = [sys.executable, str(RUNNER), str(checkpoint), str(inputs), str(result)] + (
        [revision] if revision else []
    )
    process = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr
    return json.loads(result.read_text())


# -- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh_save(tmp_path_factory) -> Path:
    """What the installed package's save_pretrained writes for a llama-preset causal LM: the expected code."""
    folder = tmp_path_factory.mktemp("fresh") / "checkpoint"
    CustomTransformerForCausalLM(tiny_config("llama")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def before(tmp_path_factory) -> dict:
    """The old checkpoint as published: its logits and generations, run by its own (pre-fix) code."""
    tmp_path = tmp_path_factory.mktemp("before")
    copy = shutil.copytree(FIXTURE, tmp_path / "checkpoint-3cf6f23")
    return generate_without_package(copy, tmp_path, env_for(tmp_path))


@pytest.fixture
def old_checkpoint(tmp_path) -> Path:
    """A copy of the fixture: the fixture itself is never written to."""
    return shutil.copytree(FIXTURE, tmp_path / "checkpoint-3cf6f23")


# -- (a) the problem -------------------------------------------------------------------------------------------


def test_old_checkpoint_generates_wrongly_with_the_default_cache_under_transformers_5_24(before):
    if version.parse(transformers.__version__) < version.parse(CACHE_RENAME_RELEASE):
        pytest.skip(
            f"transformers {transformers.__version__} predates the {CACHE_RENAME_RELEASE} cache-keyword rename: "
            "the old code still generates correctly here"
        )
    assert before["module"].startswith("transformers_modules."), "the checkpoint's own code must run"
    assert before["transformers_version"] == transformers.__version__
    assert isinstance(before["no_cache"], list), before["no_cache"]
    assert before["dynamic_cache"] != before["no_cache"], "greedy decoding with the cache should go wrong"


# -- (b) refreshing a local checkpoint -------------------------------------------------------------------------


def test_refresh_repairs_a_local_checkpoint_and_keeps_its_weights(before, old_checkpoint, fresh_save, tmp_path):
    (old_checkpoint / "README.md").write_text("# my model card\n")  # files that are not code stay as they are
    old = files_of(old_checkpoint)
    old_config = json.loads(old["config.json"])
    expected_code = code_of(files_of(fresh_save))
    stale = sorted(set(code_of(old)) - set(expected_code))

    result = run_refresh(str(old_checkpoint), env=env_for(tmp_path))

    assert result.returncode == 0, result.stderr
    new = files_of(old_checkpoint)
    assert code_of(new) == expected_code, "exactly the code files a fresh save_pretrained writes"
    assert not set(stale) & set(new), f"stale code files left: {stale}"
    for name in ("model.safetensors", "generation_config.json", "README.md"):
        assert new[name] == old[name], f"{name} changed"
    assert new["model.safetensors"] == (FIXTURE / "model.safetensors").read_bytes()
    new_config = json.loads(new["config.json"])
    assert without_code_keys(new_config) == without_code_keys(old_config)
    assert new_config["auto_map"] == json.loads((fresh_save / "config.json").read_text())["auto_map"]
    assert new_config["code_version"] == CODE_VERSION
    assert not list(old_checkpoint.glob(".*")), "no temporary file is left behind"

    lines = result.stdout.splitlines()
    for name in sorted(expected_code):
        if old.get(name) != expected_code[name]:
            assert f"  {'updated' if name in old else 'added':<8} {name}" in lines
    for name in stale:
        assert f"  removed  {name} (no longer part of the code)" in lines
    assert "  updated  config.json (code_version)" in lines
    assert lines[-1] == f"code version: unknown (saved before 0.2.0) -> {CODE_VERSION}"

    after = generate_without_package(old_checkpoint, tmp_path, env_for(tmp_path))
    assert after["module"].startswith("transformers_modules."), "the checkpoint's own (refreshed) code must run"
    assert after["dynamic_cache"] == after["static_cache"] == after["no_cache"]
    assert after["logits"] == before["logits"], "the refresh must not change what the model computes"
    assert after["no_cache"] == before["no_cache"]


def test_refresh_twice_changes_nothing_the_second_time(old_checkpoint, capsys):
    assert refresh.main([str(old_checkpoint)]) == 0
    refreshed = files_of(old_checkpoint)
    mtimes = {path.name: path.stat().st_mtime_ns for path in old_checkpoint.iterdir()}
    capsys.readouterr()

    assert refresh.main([str(old_checkpoint)]) == 0

    assert (
        capsys.readouterr().out
        == f"{old_checkpoint} already runs custom_transformer code {CODE_VERSION}: nothing to change.\n"
    )
    assert files_of(old_checkpoint) == refreshed
    assert {path.name: path.stat().st_mtime_ns for path in old_checkpoint.iterdir()} == mtimes, "nothing rewritten"


def test_dry_run_prints_the_changes_and_writes_nothing(old_checkpoint, capsys):
    old = files_of(old_checkpoint)

    assert refresh.main([str(old_checkpoint), "--dry-run"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{old_checkpoint}: would change (dry run, nothing written):"
    assert "  updated  config.json (code_version)" in out
    assert out[-1] == f"code version: unknown (saved before 0.2.0) -> {CODE_VERSION}"
    assert files_of(old_checkpoint) == old


def test_refresh_interrupted_at_any_write_leaves_whole_files_and_a_rerun_finishes(
    old_checkpoint, tmp_path, monkeypatch
):
    """Each file is replaced by a rename of a fully written, fsynced temporary file, and config.json goes last."""
    complete = shutil.copytree(old_checkpoint, tmp_path / "complete")
    refresh.refresh_folder(complete, out=lambda line: None)
    old, new = files_of(old_checkpoint), files_of(complete)
    writes = [name for name in new if new[name] != old.get(name)]
    real_replace = os.replace

    for killed_at in range(len(writes)):
        folder = shutil.copytree(old_checkpoint, tmp_path / f"killed-at-{killed_at}")
        calls = []

        def replace_then_die(source, destination, calls=calls, killed_at=killed_at):
            if len(calls) == killed_at:
                raise KeyboardInterrupt("killed")  # as a kill between writing the temporary file and renaming it
            calls.append(Path(destination).name)
            real_replace(source, destination)

        monkeypatch.setattr(os, "replace", replace_then_die)
        with pytest.raises(KeyboardInterrupt):
            refresh.refresh_folder(folder, out=lambda line: None)
        monkeypatch.setattr(os, "replace", real_replace)

        state = files_of(folder)
        for name, content in state.items():
            assert content in (old.get(name), new.get(name)), f"{name} is neither the old nor the new file"
        assert "config.json" not in calls, "config.json is written last"
        assert state["config.json"] == old["config.json"]
        assert not list(folder.glob(".*")), "the temporary file of the interrupted write is removed"

        (folder / ".modeling_custom_transformer.py.x1y2.refresh-tmp").write_bytes(b"half a fi")  # a SIGKILL's leftover
        refresh.refresh_folder(folder, out=lambda line: None)
        assert files_of(folder) == new, "running the command again finishes the job"


@pytest.fixture
def release_without_presets(monkeypatch):
    """The installed code as a release that folded presets.py into the configuration file would ship it."""
    current = refresh.code_files()
    assert "presets.py" in refresh.SHIPPED_CODE_FILES
    monkeypatch.setattr(refresh, "code_files", lambda: {k: v for k, v in current.items() if k != "presets.py"})


def test_a_code_file_the_installed_release_no_longer_ships_is_removed_and_nothing_else(
    old_checkpoint, release_without_presets, capsys
):
    (old_checkpoint / "my_preprocessing.py").write_text("# the user's own file: not ours, never touched\n")

    assert refresh.main([str(old_checkpoint)]) == 0

    assert "  removed  presets.py (no longer part of the code)" in capsys.readouterr().out.splitlines()
    assert not (old_checkpoint / "presets.py").exists()
    assert (old_checkpoint / "my_preprocessing.py").exists()


def test_a_stale_code_file_is_deleted_in_the_same_hub_commit(hub, online, release_without_presets, monkeypatch, capsys):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("org/old-model")
    operations = [CommitOperationAdd(path.name, path) for path in sorted(FIXTURE.iterdir())]
    published = api.create_commit("org/old-model", operations=operations, commit_message="Release").oid
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    assert refresh.main(["org/old-model"]) == 0

    repo = hub.repos["org/old-model"]
    assert len(repo.commits) == 3 and hub.requests.count("POST /api/models/org/old-model/commit/main") == 2
    old, new = repo.commits[published].files, repo.commits[repo.branches["main"]].files
    assert set(old) - set(new) == {"presets.py"}
    assert "  removed  presets.py (no longer part of the code)" in capsys.readouterr().out.splitlines()


def test_auto_map_is_recomputed_for_every_head_that_fits_the_config(tmp_path, capsys):
    folder = tmp_path / "encoder"
    tiny_config("bert").save_pretrained(folder)  # config.json and the configuration code only
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_custom_transformer.CustomTransformerConfig"}
    config.pop("code_version", None)
    (folder / "config.json").write_text(json.dumps(config))

    assert refresh.main([str(folder)]) == 0

    refreshed = json.loads((folder / "config.json").read_text())
    assert "AutoModelForMaskedLM" in refreshed["auto_map"] and "AutoModelForCausalLM" not in refreshed["auto_map"]
    assert refreshed["auto_map"] == refresh.modeling.auto_map(tiny_config("bert"))
    assert "  added    modeling_custom_transformer.py" in capsys.readouterr().out.splitlines()


def test_a_checkpoint_with_newer_code_than_the_installed_package_is_not_downgraded(old_checkpoint, capsys):
    config = json.loads((old_checkpoint / "config.json").read_text())
    config["code_version"] = "99.0.0"
    (old_checkpoint / "config.json").write_text(json.dumps(config))
    old = files_of(old_checkpoint)

    assert refresh.main([str(old_checkpoint)]) == 2

    assert capsys.readouterr().err == (
        f"refresh: error: {old_checkpoint} runs custom_transformer code 99.0.0, newer than the installed "
        f"{CODE_VERSION}: upgrade the installed custom_transformer package instead of downgrading the checkpoint.\n"
    )
    assert files_of(old_checkpoint) == old


def test_the_code_files_are_derived_as_save_pretrained_derives_them(fresh_save):
    assert refresh.code_files() == code_of(files_of(fresh_save))
    unknown = set(refresh.code_files()) - set(refresh.SHIPPED_CODE_FILES)
    assert not unknown, f"add {sorted(unknown)} to refresh.SHIPPED_CODE_FILES so later releases can remove them"


# -- (c) refreshing a Hub repo ---------------------------------------------------------------------------------


def test_refresh_of_a_hub_repo_is_one_commit_that_repairs_it(
    hub, online, before, fresh_save, tmp_path, monkeypatch, capsys
):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("org/old-model")
    published = api.create_commit(
        "org/old-model",
        operations=[CommitOperationAdd(path.name, path) for path in sorted(FIXTURE.iterdir())],
        commit_message="Release (code of 3cf6f23)",
    ).oid
    repo = hub.repos["org/old-model"]
    env = hub_env(hub, tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)  # for the in-process calls, which only read

    assert refresh.main(["org/old-model", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "org/old-model@main: would change (dry run, nothing written):"
    assert repo.branches["main"] == published and len(repo.commits) == 2

    result = run_refresh("org/old-model", "--commit-message", "Refresh the model code", env=env)

    assert result.returncode == 0, result.stderr
    sha = result.stdout.split("pushed one commit to org/old-model@main: ")[1].split()[0]
    assert len(repo.commits) == 3, "exactly one commit on top of the published one"
    assert repo.branches["main"] == sha
    assert repo.commits[sha].message == "Refresh the model code"
    old, new = repo.commits[published].files, repo.commits[sha].files
    assert code_of(new) == code_of(files_of(fresh_save))
    assert new["model.safetensors"] == old["model.safetensors"] == (FIXTURE / "model.safetensors").read_bytes()
    assert new["generation_config.json"] == old["generation_config.json"]
    new_config = json.loads(new["config.json"])
    assert without_code_keys(new_config) == without_code_keys(json.loads(old["config.json"]))
    assert new_config["code_version"] == CODE_VERSION

    assert refresh.main(["org/old-model"]) == 0
    assert (
        capsys.readouterr().out
        == f"org/old-model@main already runs custom_transformer code {CODE_VERSION}: nothing to change.\n"
    )
    assert len(repo.commits) == 3

    after = generate_without_package("org/old-model", tmp_path, env, revision=sha)
    assert after["module"].startswith(f"transformers_modules.org.old_hyphen_model.{sha}")
    assert after["dynamic_cache"] == after["static_cache"] == after["no_cache"]
    assert after["logits"] == before["logits"]


def test_refresh_of_an_unknown_repo_is_refused(hub, online, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)

    assert refresh.main(["org/missing"]) == 2
    assert capsys.readouterr().err == (
        f"refresh: error: org/missing is neither a local folder nor a repo reachable at {hub.url} "
        "(check the path, the repo id, HF_ENDPOINT and HF_TOKEN).\n"
    )


def test_offline_mode_refuses_a_repo_id_without_asking_the_hub(hub, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)

    assert refresh.main(["org/old-model"]) == 2
    assert capsys.readouterr().err == (
        "refresh: error: org/old-model is not a local folder, and HF_HUB_OFFLINE=1 forbids asking the Hub for it: "
        "unset it to refresh a Hub repo.\n"
    )
    assert hub.requests == []


# -- (d) bad input ---------------------------------------------------------------------------------------------


def listing(folder: Path) -> list[tuple[str, bytes | None]]:
    """Every path under `folder` with its content, except the private HF_HOME of the command."""
    paths = sorted(p for p in folder.rglob("*") if "hf-home" not in p.relative_to(folder).parts)
    return [(str(p), p.read_bytes() if p.is_file() else None) for p in paths]


def not_our_model_type(folder: Path) -> str:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    return (
        f"refresh: error: {folder}/config.json has model_type 'llama', not 'custom_transformer': refresh only "
        "updates custom_transformer checkpoints (python -m custom_transformer.convert turns a Llama, GPT-2 or BERT "
        "checkpoint into one).\n"
    )


def no_config(folder: Path) -> str:
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    return (
        f"refresh: error: {folder} has no config.json, so it is not a saved checkpoint: pass the folder that "
        "save_pretrained wrote.\n"
    )


def a_file(folder: Path) -> str:
    folder.write_text("{}")
    return f"refresh: error: {folder} is not a folder: pass the checkpoint folder that save_pretrained wrote.\n"


def neither_folder_nor_repo_id(folder: Path) -> str:
    return f"refresh: error: {folder} is neither a local folder nor a Hub repo id (org/name).\n"


def broken_config(folder: Path) -> str:
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "custom_transformer",')  # cut short
    with pytest.raises(json.JSONDecodeError) as error:
        json.loads((folder / "config.json").read_text())
    return f"refresh: error: {folder}/config.json is not valid JSON ({error.value}): restore it from the original checkpoint.\n"


@pytest.mark.parametrize("make", [not_our_model_type, no_config])
def test_the_command_refuses_what_is_not_a_custom_transformer_checkpoint_with_exit_code_2(make, tmp_path):
    target = tmp_path / "target"
    expected = make(target)
    before = listing(tmp_path)

    result = run_refresh(str(target), env=env_for(tmp_path))

    assert result.returncode == 2
    assert result.stderr == expected, "one line, no traceback"
    assert result.stdout == ""
    assert listing(tmp_path) == before, "nothing was written"


@pytest.mark.parametrize("make", [a_file, neither_folder_nor_repo_id, broken_config])
def test_other_bad_input_is_refused_with_one_line(make, tmp_path, capsys):
    target = tmp_path / "target"
    expected = make(target)
    before = listing(tmp_path)

    assert refresh.main([str(target)]) == 2

    assert capsys.readouterr() == ("", expected)
    assert listing(tmp_path) == before, "nothing was written"


def test_a_file_that_cannot_be_written_is_one_line_and_the_next_run_finishes(old_checkpoint, monkeypatch, capsys):
    before = files_of(old_checkpoint)

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(refresh.os, "replace", disk_full)
    assert refresh.main([str(old_checkpoint)]) == 2

    assert capsys.readouterr().err == (
        f"refresh: error: cannot refresh {old_checkpoint} ([Errno 28] No space left on device): every file in it is "
        "still whole; fix that and run the command again to finish.\n"
    )
    assert files_of(old_checkpoint) == before
    assert sorted(p.name for p in old_checkpoint.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    assert refresh.main([str(old_checkpoint)]) == 0
    assert json.loads((old_checkpoint / "config.json").read_text())["code_version"] == CODE_VERSION
