"""Serving: `python -m custom_transformer.serve` puts a checkpoint behind transformers' OpenAI-compatible server.

The server runs in its own process on 127.0.0.1 and loads the checkpoint by path with the code it carries
(`--trust-remote-code`); the real `openai` client asks it for chat completions, plain and streamed, and each
reply must be what greedy `generate` decodes in this process from the same chat-templated prompt.
"""

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import transformers
from helpers.training_data import FAST, TINY_MODEL, make_tokenizer, sentences, write_jsonl
from helpers.transformers_releases import latest_patch_of_each_minor, newest_release, release_env
from openai import OpenAI
from transformers import AutoModelForCausalLM, AutoTokenizer

from custom_transformer import serve
from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION
from training import pretrain

MESSAGES = [{"role": "user", "content": "The cat sat on the"}]
MAX_TOKENS = 8
STARTUP_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def chat_checkpoint(tmp_path_factory) -> str:
    """A tiny Llama-preset causal LM pre-trained for a few steps on chats rendered with its tokenizer's template.

    Trained, so that it answers an assistant turn with words: a random model's greedy bytes need not be valid
    UTF-8, and a stream cannot decode an incomplete character at its end the way a whole reply is decoded.
    """
    root = tmp_path_factory.mktemp("serving")
    tokenizer = make_tokenizer(root / "tokenizer")
    chats = [
        [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        for question, answer in zip(sentences(200, seed=1), sentences(200, seed=2))
    ]
    rows = [{"text": tokenizer.apply_chat_template(chat, tokenize=False)} for chat in chats]
    pretrain.main(
        [
            "--preset", "llama", "--config_overrides", TINY_MODEL, "--tokenizer_name_or_path", str(root / "tokenizer"),
            "--train_files", write_jsonl(root / "chats.jsonl", rows), "--block_size", "64",
            "--per_device_train_batch_size", "8", "--learning_rate", "1e-2", "--max_steps", "30",
            "--save_strategy", "no", "--output_dir", str(root / "checkpoint"), "--do_train", *FAST,
        ]
    )  # fmt: skip
    return str(root / "checkpoint")


def greedy_reply(checkpoint: str) -> tuple[str, int]:
    """The reply text and its token count, from in-process greedy `generate` on the chat-templated prompt."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, trust_remote_code=True)
    inputs = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    return tokenizer.decode(new_tokens, skip_special_tokens=True), len(new_tokens)


def serving_floor() -> str:
    """The newest patch of the first release serving works on (5.5.x)."""
    return latest_patch_of_each_minor(floor=serve.SERVING_MIN_TRANSFORMERS_VERSION)[0]


# The releases the server runs under, asked of the index when the test runs (never while pytest collects): the
# project's, the first with a model manager (5.5), and the newest (5.25 loads each model in a spawned process).
SERVED_UNDER = {
    "project-env": lambda: transformers.__version__,
    "serving-floor": serving_floor,
    "newest": newest_release,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(checkpoint: str, log_path: Path, env: dict):
    """The entry point as a user starts it, until it answers /health; stopped by its PID whatever happens."""
    port = free_port()
    command = [sys.executable, "-m", "custom_transformer.serve", checkpoint, "--trust-remote-code"]
    command += ["--device", "cpu", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert server.poll() is None, f"the server exited ({server.returncode}):\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"no /health in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}"
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.parametrize(
    "served_under",
    [pytest.param(name, marks=() if name == "project-env" else pytest.mark.index) for name in SERVED_UNDER],
)
def test_chat_completions_plain_and_streamed_equal_greedy_generate(chat_checkpoint, tmp_path, served_under):
    release = SERVED_UNDER[served_under]()
    print(f"serving under transformers {release}")
    expected, n_tokens = greedy_reply(chat_checkpoint)
    assert expected.strip(), "the comparison needs a reply with text in it"

    with serving(chat_checkpoint, tmp_path / "server.log", release_env(release, tmp_path / "hf-home")) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="not-needed", max_retries=0, timeout=60)
        request = {"model": chat_checkpoint, "messages": MESSAGES, "temperature": 0, "max_tokens": MAX_TOKENS}
        reply = client.chat.completions.create(**request)
        chunks = list(client.chat.completions.create(**request, stream=True))

    assert reply.choices[0].message.content == expected
    assert reply.usage.completion_tokens == n_tokens
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == expected


def test_help_is_transformers_serve_help_under_this_command(monkeypatch, capsys):
    from transformers.cli.serving import model_manager

    name = serve.UpstreamLoader.__name__
    monkeypatch.setattr(model_manager, name, getattr(model_manager, name))  # main() swaps it: put it back
    with pytest.raises(SystemExit) as exited:
        serve.main(["--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("Usage: python -m custom_transformer.serve [OPTIONS] [force_model]")
    assert "--trust-remote-code" in help_text and "--continuous-batching" in help_text


def test_a_release_without_a_loading_hook_is_an_import_error_naming_the_fix(monkeypatch):
    from transformers.cli.serving import model_manager

    class ModelManagerBefore55:  # what 5.0 - 5.4 did not have: loading lived inside `Serve`
        pass

    monkeypatch.setattr(model_manager, "ModelManager", ModelManagerBefore55)
    monkeypatch.delattr(model_manager, "ModelLoader", raising=False)
    with pytest.raises(ImportError) as error:
        serve.upstream_loader()
    assert str(error.value) == (
        "transformers.cli.serving.model_manager has neither ModelLoader._load_model(model_id, ...) nor "
        f"ModelManager._load_model(model_id_and_revision, ...): transformers {transformers.__version__} is installed, "
        "and serving needs the model loading of transformers>=5.5.0. Upgrade with: pip install "
        "'custom-transformer[serving]' (or pip install -U 'transformers[serving]>=5.5.0')"
    )


def test_a_model_id_splits_into_repo_and_revision_and_a_path_keeps_its_at_sign(tmp_path):
    assert serve.split_model_id("org/model@dev") == ("org/model", "dev", None)
    (tmp_path / "ckpt@2").mkdir()
    assert serve.split_model_id(str(tmp_path / "ckpt@2")) == (str(tmp_path / "ckpt@2"), None, None)


@pytest.mark.index
def test_on_the_floor_release_the_entry_point_stops_with_the_upgrade_to_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "custom_transformer.serve", "--help"],
        env=release_env(MIN_TRANSFORMERS_VERSION, tmp_path / "hf-home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert f"transformers {MIN_TRANSFORMERS_VERSION} is installed" in proc.stderr
    assert "pip install -U 'transformers[serving]>=5.5.0'" in proc.stderr
