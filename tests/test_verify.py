"""`python -m custom_transformer.verify`: is the code a checkpoint carries exactly a release's, before anything runs it?

Each case is a real checkpoint folder (saved by the installed package, by 0.2.0, by the code before 0.2.0), edited
the way an attacker or an accident would, and checked locally, through the command line and through the Hub client
against the loopback server. Every tampered module here writes a marker file when imported: verification must never
import it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from helpers.hub_server import HUB_TOKEN
from helpers.models import tiny_config
from huggingface_hub import CommitOperationAdd, HfApi

import custom_transformer
from custom_transformer import CustomTransformerForCausalLM, UnverifiedCodeError, releases
from custom_transformer.configuration_custom_transformer import CODE_VERSION
from custom_transformer.verify import Verdict, verify

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
MODELING = "modeling_custom_transformer.py"


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A checkpoint saved by the installed package."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("saved") / "tiny"
    CustomTransformerForCausalLM(tiny_config("llama")).save_pretrained(folder)
    return folder


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "copy"))


def marker_code(marker: Path) -> str:
    """Python that leaves `marker` behind if it is ever imported."""
    return f"open({str(marker)!r}, 'w').write('imported')\n"


def edit_one_byte(folder: Path) -> None:
    path = folder / MODELING
    content = path.read_bytes()
    position = content.index(b"self.scaling = self.head_dim**-0.5") + len("self.scaling = self.head_dim**-0.")
    path.write_bytes(content[:position] + b"4" + content[position + 1 :])  # -0.5 becomes -0.4


def edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        config[key] = value if not callable(value) else value(config[key])
    (folder / "config.json").write_text(json.dumps(config))


def run_verify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "custom_transformer.verify", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
    )


# -- verdicts on local folders ----------------------------------------------------------------------------------


def test_a_checkpoint_saved_by_the_installed_package_is_verified_as_its_release(saved):
    report = verify(saved)

    assert report.verdict is Verdict.VERIFIED and report.problems == []
    assert report.state.version == CODE_VERSION
    assert report.summary == f"verified: the code in {saved} is exactly {report.state.label}."


def test_one_byte_changed_in_the_model_code_is_named_with_a_diff_against_the_released_file(copy):
    edit_one_byte(copy)

    report = verify(copy)

    assert report.verdict is Verdict.FILE_DIFFERS == 3
    assert report.problems == [f"{MODELING} differs from {CODE_VERSION}'s file (diff below)."]
    (diff,) = report.diffs
    assert f"--- custom_transformer {CODE_VERSION}/{MODELING}\n+++ {copy}/{MODELING}\n" in diff
    assert "\n-        self.scaling = self.head_dim**-0.5\n+        self.scaling = self.head_dim**-0.4\n" in diff


def test_an_extra_module_is_named_and_never_imported(copy, tmp_path):
    marker = tmp_path / "imported"
    (copy / "helpers_for_speed.py").write_text(marker_code(marker))

    report = verify(copy)

    assert report.verdict is Verdict.EXTRA_CODE == 4
    assert report.problems == [f"helpers_for_speed.py is not part of {CODE_VERSION}'s code (no release ships it)."]
    assert not marker.exists() and "helpers_for_speed" not in sys.modules


def test_python_code_in_a_subfolder_counts_as_extra_code(copy):
    (copy / "custom_generate").mkdir()
    (copy / "custom_generate" / "generate.py").write_text("def generate(model, **kwargs): ...\n")

    assert verify(copy).problems == [
        f"custom_generate/generate.py is not part of {CODE_VERSION}'s code (no release ships it)."
    ]


def test_a_module_an_older_release_shipped_is_extra_and_refresh_removes_it(copy):
    (copy / "presets.py").write_bytes(b"PRESETS = {}\n")

    report = verify(copy)

    assert report.verdict is Verdict.EXTRA_CODE
    assert report.problems == [
        f"presets.py is not part of {CODE_VERSION}'s code (an older release shipped it: refresh removes it)."
    ]


@pytest.mark.parametrize(
    "reference, why",
    [
        ("attacker/repo--modeling_custom_transformer.CustomTransformerForCausalLM", "code from another repo"),
        ("speedups.FastCausalLM", "speedups.py is not one of"),
        ("modeling_custom_transformer.FastCausalLM", "modeling_custom_transformer.py defines no class FastCausalLM"),
    ],
)
def test_auto_map_naming_other_code_is_refused_though_every_file_is_the_releases(copy, reference, why):
    edit_config(copy, auto_map=lambda auto_map: {**auto_map, "AutoModelForCausalLM": reference})

    report = verify(copy)

    assert report.verdict is Verdict.NAMES_OTHER_CODE == 5
    (problem,) = report.problems
    assert problem.startswith(f"config.json auto_map AutoModelForCausalLM = {reference!r}: ") and why in problem
    assert "the files in" in report.summary and "are release" in report.summary


def test_a_tokenizer_config_naming_code_is_refused(copy):
    (copy / "tokenizer_config.json").write_text(json.dumps({"auto_map": {"AutoTokenizer": ["tok.Slow", None]}}))

    (problem,) = verify(copy).problems

    assert problem.startswith("tokenizer_config.json auto_map AutoTokenizer = 'tok.Slow': tok.py is not one of")


def test_a_missing_code_file_is_named(copy):
    (copy / "transformers_compat.py").unlink()

    report = verify(copy)

    assert report.verdict is Verdict.FILE_DIFFERS
    assert report.problems == [f"transformers_compat.py is missing: {CODE_VERSION} ships it."]


def test_the_0_2_0_fixture_verifies_as_0_2_0(tmp_path):
    folder = Path(shutil.copytree(FIXTURES / "checkpoints-0.2.0" / "llama", tmp_path / "llama"))
    for code in (FIXTURES / "code-0.2.0").iterdir():  # the code files 0.2.0's save_pretrained wrote beside them
        shutil.copy(code, folder)

    report = verify(folder)

    assert report.verdict is Verdict.VERIFIED
    assert report.state.version == "0.2.0"
    assert report.state.label.startswith("0.2.0 as of commit 96b1f8284b98 (2026-11-30)")


def test_code_saved_before_code_version_existed_is_older_than_the_manifest():
    report = verify(FIXTURES / "checkpoint-3cf6f23")

    assert report.verdict is Verdict.OLDER_VERSION == 7
    assert "saved before 0.2.0 (no code_version)" in report.summary
    assert "python -m custom_transformer.refresh" in report.summary


@pytest.mark.parametrize(
    "version, verdict, advice",
    [
        ("99.0.0", Verdict.NEWER_VERSION, "upgrade custom_transformer"),
        ("0.1.0", Verdict.OLDER_VERSION, "python -m custom_transformer.refresh"),
        ("0.3.7", Verdict.UNKNOWN_VERSION, "no custom_transformer release had"),
    ],
)
def test_a_code_version_this_package_does_not_record_says_what_to_do(copy, version, verdict, advice):
    edit_config(copy, code_version=version)

    report = verify(copy)

    assert report.verdict is verdict and advice in report.summary


def test_every_recorded_state_verifies_as_itself(tmp_path):
    """Each state in the manifest, written out as a checkpoint's code, is recognised as exactly that state."""
    for index, state in enumerate(releases.code_states()):
        folder = tmp_path / str(index)
        folder.mkdir()
        (folder / "config.json").write_text(
            json.dumps({"model_type": "custom_transformer", "code_version": state.version})
        )
        for name, digest in state.files.items():
            (folder / name).write_bytes(releases.released_file(digest))

        report = verify(folder)

        assert (report.verdict, report.state) == (Verdict.VERIFIED, state)


# -- the command line --------------------------------------------------------------------------------------------


def test_the_command_prints_the_verdict_and_exits_with_its_code(saved, copy):
    edit_one_byte(copy)

    good, bad = run_verify(str(saved)), run_verify(str(copy))

    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.startswith(f"verified: the code in {saved} is exactly release {CODE_VERSION}")
    assert bad.returncode == 3
    assert bad.stdout.startswith(f"NOT verified: code in {copy} differs from release {CODE_VERSION}")
    assert "+        self.scaling = self.head_dim**-0.4" in bad.stdout


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: folder.mkdir(), "has no config.json, so it is not a saved checkpoint."),
        (lambda folder: folder.write_text("{}"), "is not a folder"),
        (lambda folder: (folder.mkdir(), (folder / "config.json").write_text("{")), "config.json is not valid JSON"),
        (
            lambda folder: (folder.mkdir(), (folder / "config.json").write_text('{"model_type": "llama"}')),
            "has model_type 'llama', not 'custom_transformer'",
        ),
    ],
)
def test_what_is_not_a_checkpoint_is_one_line_and_exit_code_2(tmp_path, make, message):
    make(tmp_path / "target")

    result = run_verify(str(tmp_path / "target"))

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("verify: error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1, "one line, no traceback"


def test_offline_a_repo_id_is_refused_without_asking(hub):
    result = run_verify("org/tiny", env={**_offline_env(), "HF_ENDPOINT": hub.url})

    assert result.returncode == 2
    assert "HF_HUB_OFFLINE=1 forbids asking the Hub for it: unset it to verify a Hub repo." in result.stderr
    assert hub.requests == []


def _offline_env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


# -- through the Hub client ----------------------------------------------------------------------------------------


def publish(hub, repo_id: str, folder: Path) -> str:
    api = HfApi(endpoint=hub.url, token=HUB_TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    operations = [CommitOperationAdd(path.relative_to(folder).as_posix(), path) for path in files]
    return api.create_commit(repo_id, operations=operations, commit_message="upload").oid


def test_a_hub_repo_is_verified_at_the_commit_it_read_and_a_tampered_push_is_caught(
    hub, online, saved, copy, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    clean = publish(hub, "org/tiny", saved)
    marker = tmp_path / "imported"
    edit_one_byte(copy)
    (copy / MODELING).write_bytes((copy / MODELING).read_bytes() + marker_code(marker).encode())
    tampered = publish(hub, "org/tiny", copy)

    at_main, at_clean = verify("org/tiny"), verify("org/tiny", revision=clean)

    assert (at_main.verdict, at_main.commit) == (Verdict.FILE_DIFFERS, tampered)
    assert at_main.summary.startswith(f"NOT verified: code in org/tiny@main differs from release {CODE_VERSION}")
    assert (at_clean.verdict, at_clean.commit) == (Verdict.VERIFIED, clean)
    assert f"read at commit {clean}: load it with revision='{clean}'" in at_clean.text()
    assert not marker.exists(), "verification imported the tampered module"
    read = {request.rsplit("/", 1)[-1] for request in hub.requests if "/resolve/" in request}
    assert read == {"config.json", *(name for name in os.listdir(saved) if name.endswith(".py"))}, (
        "configs and code only"
    )


def test_the_command_verifies_a_hub_repo_through_the_client(hub, online, saved, tmp_path):
    commit = publish(hub, "org/tiny", saved)
    env = {**_offline_env(), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}

    result = run_verify("org/tiny", "--revision", commit, env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"verified: the code in org/tiny@{commit} is exactly release {CODE_VERSION}")


# -- loading through the package ---------------------------------------------------------------------------------


def test_from_pretrained_verifies_then_loads_with_the_installed_classes(saved):
    model = custom_transformer.from_pretrained(saved)

    assert type(model) is CustomTransformerForCausalLM
    assert type(custom_transformer.from_pretrained(saved, model_class=transformers.AutoModel)).__module__ == (
        "custom_transformer.modeling_custom_transformer"
    )


def test_from_pretrained_refuses_unverified_code_unless_accepted_and_never_runs_it(copy, tmp_path):
    marker = tmp_path / "imported"
    (copy / MODELING).write_bytes((copy / MODELING).read_bytes() + marker_code(marker).encode())

    with pytest.raises(UnverifiedCodeError, match=r"(?s)NOT verified.*pass allow_unverified=True"):
        custom_transformer.from_pretrained(copy)
    model = custom_transformer.from_pretrained(copy, allow_unverified=True)

    assert type(model) is CustomTransformerForCausalLM
    assert not marker.exists(), "the checkpoint's own code ran"
    with pytest.raises(ValueError, match="never runs a checkpoint's code: drop trust_remote_code"):
        custom_transformer.from_pretrained(copy, trust_remote_code=True)


LOAD_FROM_HUB = """
import sys, torch, custom_transformer
try:
    custom_transformer.from_pretrained("org/tiny")
    print("loaded the tampered main")
except custom_transformer.UnverifiedCodeError:
    print("refused main")
model = custom_transformer.from_pretrained("org/tiny", revision=sys.argv[1])
print(type(model).__module__, sum(float(t.double().sum()) for t in model.state_dict().values()))
"""


def test_from_pretrained_loads_a_hub_repo_at_the_verified_commit(hub, online, saved, copy, tmp_path):
    clean = publish(hub, "org/tiny", saved)
    edit_one_byte(copy)
    publish(hub, "org/tiny", copy)
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "home")}

    result = subprocess.run(
        [sys.executable, "-c", LOAD_FROM_HUB, clean], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    refused, loaded = result.stdout.splitlines()
    assert refused == "refused main"
    module, checksum = loaded.split()
    expected = sum(
        float(t.double().sum()) for t in CustomTransformerForCausalLM.from_pretrained(saved).state_dict().values()
    )
    assert module == "custom_transformer.modeling_custom_transformer" and float(checksum) == expected
