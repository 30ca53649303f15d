"""Model cards and hub-ready exports, built from a real (tiny) Trainer run."""

import json
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
import yaml
from helpers.tiny_run import build_tiny_run
from huggingface_hub import ModelCard
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import model_cards.export
from custom_transformer import UnverifiedCodeError, releases
from custom_transformer.refresh import code_files
from model_cards import IncompleteRunError, export_run, load_run, write_model_card
from model_cards.__main__ import CardArguments, CommitArguments, ExportArguments, parse_args
from model_cards.card import TEMPLATE_PATH, card_data

REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_FILES = set(code_files())  # what every checkpoint ships (tests/test_modeling.py names them)
HUB_FILES = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "README.md",
    "training_curves.png",
    *CODE_FILES,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return build_tiny_run(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def card_path(run_dir, tmp_path_factory) -> Path:
    return write_model_card(run_dir, tmp_path_factory.mktemp("card"), repo_id="org/tiny-classifier")


def run_info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run_info.json").read_text())


def copy_of(run_dir: Path, tmp_path: Path, **run_info_changes) -> Path:
    """The run, copied without its Trainer checkpoints, with `run_info_changes` written into its run_info.json."""
    copy = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    (copy / "run_info.json").write_text(json.dumps({**run_info(copy), **run_info_changes}))
    return copy


def test_card_front_matter_parses_and_round_trips_eval_results(run_dir, card_path):
    front_matter = yaml.safe_load(REGEX_YAML_BLOCK.search(card_path.read_text()).group(2))
    info = run_info(run_dir)

    assert front_matter["library_name"] == "transformers"
    assert front_matter["pipeline_tag"] == "text-classification"
    assert "custom_code" in front_matter["tags"]
    assert front_matter["license"] == "cc0-1.0"
    assert front_matter["datasets"] == ["cats-and-dogs"]
    assert front_matter["metrics"] == ["loss", "accuracy", "f1_macro"]
    [result] = front_matter["model-index"][0]["results"]
    assert result["dataset"]["split"] == "test"
    results = {name: value for name, value in info["metrics"].items() if name != "num_rows"}  # a count, not a result
    assert {m["type"]: m["value"] for m in result["metrics"]} == results

    expected = card_data(load_run(run_dir), "tiny-classifier")
    loaded = ModelCard.load(card_path).data
    assert loaded.eval_results == expected.eval_results
    assert loaded.to_dict() == expected.to_dict()


def test_card_reports_the_run_artefacts(run_dir, card_path):
    text = card_path.read_text()
    model = AutoModelForSequenceClassification.from_pretrained(run_dir, trust_remote_code=True)
    info = run_info(run_dir)

    assert f"| Parameters | {sum(p.numel() for p in model.parameters()):,} " in text
    assert "| Layers | 2 |" in text
    assert "| Hidden size | 32 " in text
    assert f"| Input | {model.config.vocab_size:,} tokens, up to 64 positions (rotary (RoPE)) |" in text
    assert "pre-norm" in text
    tfidf, majority, metrics = info["baselines"]["tfidf_logreg"], info["baselines"]["majority_class"], info["metrics"]
    assert f"| TF-IDF + logistic regression | n/a | {tfidf['accuracy']:.4f} | {tfidf['f1_macro']:.4f} |" in text
    assert f"| Majority class | n/a | {majority['accuracy']:.4f} | {majority['f1_macro']:.4f} |" in text
    assert f"| **this model** | **{metrics['loss']:.4f}** | **{metrics['accuracy']:.4f}** |" in text
    assert f"of wall time on {info['hardware']}." in text
    assert "| `learning_rate` | `0.003` |" in text
    assert "| `model.hidden_size` | `32` |" in text
    assert 'repo_id = "org/tiny-classifier"' in text
    assert (
        "AutoModelForSequenceClassification.from_pretrained(repo_id, trust_remote_code=True, revision=revision)" in text
    )


def test_card_describes_the_base_model_labels_and_training_data_from_run_info(run_dir, card_path):
    text = card_path.read_text()
    info = run_info(run_dir)
    dataset = info["dataset"]

    assert f"for text classification, fine-tuned from `{info['base_model']}` on {dataset['name']}." in text
    assert f"| Base model | `{info['base_model']}` (a local checkpoint, not a Hub model) |" in text
    assert "| Labels | " + ", ".join(f"`{label}`" for label in dataset["labels"]) + " |" in text
    assert f"- Dataset: **{dataset['name']}** ({dataset['source']})\n- License: {dataset['license']}\n" in text
    assert "- Files: " + ", ".join(f"`{name}`" for name in dataset["files"]) + "\n" in text
    assert (
        "| Split | Examples |\n|---|---|\n" + "".join(f"| {s} | {n:,} |\n" for s, n in dataset["split_sizes"].items())
        in text
    )
    assert (
        f"- Trained on one dataset ({dataset['name']}, {dataset['split_sizes']['train']} training examples) "
        "and evaluated only on its `test` split" in text
    )
    assert "- Inputs are limited to 64 positions (rotary (RoPE))." in text


def test_card_compares_the_model_with_the_strongest_baseline_on_each_metric(run_dir, tmp_path):
    run = copy_of(
        run_dir,
        tmp_path,
        metrics={"loss": 0.5, "accuracy": 0.9, "f1_macro": 0.4, "num_rows": 23},
        baselines={
            "majority_class": {"loss": 0.7, "accuracy": 0.5, "f1_macro": 0.3333},
            "tfidf_logreg": {"loss": 0.45, "accuracy": 0.8, "f1_macro": 0.6},
        },
    )
    text = write_model_card(run, tmp_path / "card").read_text()
    evaluation = text.split("## Evaluation")[1].split("\n## ")[0]
    limitations = text.split("## Limitations")[1].split("\n## ")[0]

    assert (
        "Results on the `test` split of cats-and-dogs (23 examples); the baselines were measured on the same split."
        in evaluation
    )
    assert (
        "| Model | Loss | Accuracy | F1 (macro) |\n"
        "|---|---|---|---|\n"
        "| **this model** | **0.5000** | **0.9000** | **0.4000** |\n"
        "| Majority class | 0.7000 | 0.5000 | 0.3333 |\n"
        "| TF-IDF + logistic regression | 0.4500 | 0.8000 | 0.6000 |\n"
    ) in evaluation
    # Lower is better for a loss: the strongest baseline on it is the one with the smallest.
    assert (
        "- Loss: 0.5000, worse than the strongest baseline (TF-IDF + logistic regression, 0.4500; difference +0.0500)."
        in evaluation
    )
    assert (
        "- Accuracy: 0.9000, better than the strongest baseline (TF-IDF + logistic regression, 0.8000; difference +0.1000)."
        in evaluation
    )
    assert (
        "- F1 (macro): 0.4000, worse than the strongest baseline (TF-IDF + logistic regression, 0.6000; difference -0.2000)."
        in evaluation
    )
    assert "- On Loss it does not beat the TF-IDF + logistic regression baseline (0.5000 against 0.4500)" in limitations
    assert (
        "- On F1 (macro) it does not beat the TF-IDF + logistic regression baseline (0.4000 against 0.6000): prefer the baseline where that metric matters."
        in limitations
    )
    assert "On Accuracy" not in limitations


def test_a_run_without_baselines_or_logged_curves_says_so(run_dir, tmp_path):
    run = copy_of(run_dir, tmp_path, baselines={})
    state = json.loads((run / "trainer_state.json").read_text())
    state["log_history"] = []
    (run / "trainer_state.json").write_text(json.dumps(state))

    card = write_model_card(run, tmp_path / "card")
    text = card.read_text()
    assert "Results on the `test` split of cats-and-dogs (23 examples).\n" in text
    assert "| **this model** |" in text and "| Majority class |" not in text
    assert "No baselines were recorded for this run, so these numbers have no reference point." in text
    assert "No training curve: `trainer_state.json` logged no loss or evaluation metric." in text
    assert [p.name for p in card.parent.iterdir()] == ["README.md"]


def test_the_card_template_ships_with_the_package():
    tomllib = pytest.importorskip("tomllib")
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    template = TEMPLATE_PATH.relative_to(REPO_ROOT / "model_cards").as_posix()
    assert any(fnmatch(template, pattern) for pattern in package_data["model_cards"])


def test_card_states_the_code_release_the_checkpoint_runs_and_how_to_verify_and_refresh_it(
    run_dir, card_path, tmp_path
):
    code_version = json.loads((run_dir / "config.json").read_text())["code_version"]
    how_to_use = card_path.read_text().split("## How to use")[1]
    assert f"runs `custom_transformer` code version **{code_version}** (`code_version` in `config.json`)" in how_to_use
    assert f"whatever version of the package you have: {releases.states_of(code_version)[-1].label}." in how_to_use
    assert "`python -m custom_transformer.verify org/tiny-classifier`" in how_to_use
    assert '`custom_transformer.from_pretrained("org/tiny-classifier")` verifies and then loads' in how_to_use
    assert "`python -m custom_transformer.refresh org/tiny-classifier`" in how_to_use

    old = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((old / "config.json").read_text())
    del config["code_version"]  # as config.json was before custom_transformer 0.2.0
    (old / "config.json").write_text(json.dumps(config))
    text = write_model_card(old, tmp_path / "card", repo_id="org/old").read_text()
    assert "code version **unknown (saved before 0.2.0)**" in text
    assert "`python -m custom_transformer.refresh org/old`" in text


def test_training_curves_are_saved_beside_the_card_and_embedded(card_path):
    png = card_path.parent / "training_curves.png"
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "](training_curves.png)" in card_path.read_text()


def test_a_local_base_model_never_becomes_hub_metadata_even_after_the_run_moves(run_dir, tmp_path):
    moved = shutil.copytree(run_dir, tmp_path / "elsewhere" / "run")  # the base checkpoint stays behind
    card = ModelCard.load(write_model_card(moved, tmp_path / "card"))
    assert run_info(moved)["base_model_is_local"] is True
    assert card.data.base_model is None


def test_card_without_results_is_refused(run_dir, tmp_path):
    broken = copy_of(run_dir, tmp_path, metrics={})

    with pytest.raises(IncompleteRunError, match="no test metrics"):
        write_model_card(broken, tmp_path / "card")
    assert not (tmp_path / "card").exists()


def test_results_are_reported_on_the_split_they_were_measured_on(run_dir, tmp_path):
    info = run_info(run_dir)
    run = copy_of(
        run_dir,
        tmp_path,
        evaluated_split="validation",  # what the training scripts write when a dataset has no test split
        metrics={**info["metrics"], "num_rows": info["dataset"]["split_sizes"]["validation"]},  # the rows it scores
    )

    card = write_model_card(run, tmp_path / "card")
    assert ModelCard.load(card).data.eval_results[0].dataset_split == "validation"
    assert "Results on the `validation` split of cats-and-dogs (21 examples)" in card.read_text()


def test_cli_regenerates_the_card_for_a_run(run_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "model_cards", "--run_dir", str(run_dir), "--output_dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "training_curves.png"]
    assert f'repo_id = "./{tmp_path.name}"' in (tmp_path / "README.md").read_text()


def test_cli_takes_the_training_scripts_underscore_flags():
    assert parse_args(["--run_dir", "runs/x"]) == ("card", (CardArguments(run_dir="runs/x"),))
    command, arguments = parse_args(
        ["export", "--run_dir", "runs/x", "--to", "hub/x", "--max_shard_size", "2GB"]
        + ["--push_to_hub", "--hub_model_id", "org/name", "--commit_message", "First release", "--private"]
    )
    assert command == "export"
    assert arguments == (
        ExportArguments(run_dir="runs/x", to="hub/x", max_shard_size="2GB", push_to_hub=True, hub_model_id="org/name"),
        CommitArguments(commit_message="First release", private=True),
    )


def test_cli_refuses_push_to_hub_without_a_hub_model_id(capsys):
    with pytest.raises(SystemExit) as refused:
        parse_args(["export", "--run_dir", "runs/x", "--to", "hub/x", "--push_to_hub"])
    assert refused.value.code == 2
    assert "--push_to_hub needs --hub_model_id ORG/NAME" in capsys.readouterr().err


def test_parsing_the_command_line_does_not_import_torch():
    script = (
        "import sys\n"
        "from model_cards.__main__ import parse_args\n"
        "parse_args(['push', '--folder', 'hub/x', '--hub_model_id', 'org/name'])\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_export_writes_exactly_the_hub_files_without_local_paths(run_dir, tmp_path):
    folder = export_run(run_dir, tmp_path / "export", max_shard_size="20KB")

    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = set(index["weight_map"].values())
    assert len(shards) > 1
    assert {p.name for p in folder.iterdir()} == HUB_FILES | shards | {"model.safetensors.index.json"}
    for path in folder.iterdir():
        content = path.read_bytes()
        for local in (str(tmp_path), str(run_dir), str(REPO_ROOT), str(Path.home())):
            assert local.encode() not in content, f"{path.name} contains {local}"
    assert not list(tmp_path.glob(".export.*")), "the staging folder was left behind"

    exported = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    original = AutoModelForSequenceClassification.from_pretrained(run_dir, trust_remote_code=True).eval()
    batch = AutoTokenizer.from_pretrained(folder)(["good film", "bad plot not good"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(exported(**batch).logits, original(**batch).logits)


def test_export_refuses_a_non_empty_destination_unless_overwrite(run_dir, tmp_path):
    destination = tmp_path / "export"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")

    with pytest.raises(FileExistsError, match="not empty: pass --overwrite"):
        export_run(run_dir, destination)
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]

    export_run(run_dir, destination, overwrite=True)
    assert {p.name for p in destination.iterdir()} == HUB_FILES | {"model.safetensors"}


def test_export_refuses_a_run_whose_code_was_edited_before_running_it(run_dir, tmp_path):
    edited = shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("checkpoint-*"))
    marker = tmp_path / "imported"
    modeling = edited / "modeling_custom_transformer.py"
    modeling.write_text(modeling.read_text() + f"open({str(marker)!r}, 'w')\n")

    with pytest.raises(UnverifiedCodeError, match=r"(?s)Refusing to export .*modeling_custom_transformer.py differs"):
        export_run(edited, tmp_path / "export")
    assert not (tmp_path / "export").exists() and not marker.exists()


def test_failed_export_leaves_the_destination_untouched(run_dir, tmp_path, monkeypatch):
    destination = tmp_path / "export"
    destination.mkdir()
    (destination / "keep.txt").write_text("mine")

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(model_cards.export, "write_model_card", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        export_run(run_dir, destination, overwrite=True)
    assert [p.name for p in destination.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_a_machine_path_in_safetensors_metadata_is_found_but_tensor_bytes_are_not_read(tmp_path):
    from safetensors.torch import save_file

    from model_cards.checkpoint import find_local_paths

    secret = tmp_path / "private" / "run"
    tensor = torch.frombuffer(bytearray(str(secret).encode()), dtype=torch.uint8)  # the path as raw tensor data
    save_file({"weight": tensor}, tmp_path / "model.safetensors", metadata={"source": str(secret)})
    assert find_local_paths(tmp_path, ["model.safetensors"], extra=(secret,)) == [("model.safetensors", str(secret))]
    save_file({"weight": tensor}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert find_local_paths(tmp_path, ["model.safetensors"], extra=(secret,)) == []


def test_the_card_lists_the_recorded_hyperparameters_but_not_those_that_do_not_apply():
    from types import SimpleNamespace

    from model_cards.card import hyperparameter_rows

    run = SimpleNamespace(info={"hyperparameters": {"learning_rate": 0.002, "max_seq_length": None, "seed": 0}})
    assert [name for name, _ in hyperparameter_rows(run)] == ["`learning_rate`", "`seed`"]
