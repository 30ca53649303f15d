"""The checkpoint contract: tiny saved checkpoints, what they must give, and a runner under any transformers.

Shared by the canary (`tests/test_transformers_releases.py`), the remote-code tests and the release matrix
(`compat_matrix.py`). A checkpoint is saved here, with the outputs and greedy tokens the model gave in this
process; `checkpoint_contract.py` (beside this file) then loads it in a fresh interpreter without the package,
under the project env or under a release site (`transformers_releases.py`), and `contract_failures` says what
broke.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).parent / "checkpoint_contract.py"
LOGITS_TOLERANCE = 1e-5
MAX_NEW_TOKENS = 8  # the runner generates as many
GENERATION_MODES = ("use_cache=False", "dynamic", "static")
SENTENCE = "a big cat sat on the mat"  # what the encoder-decoders' shipped translation pipeline translates


def token_batch(left_padding: bool, batch: int = 2, seq: int = 7):
    """Seeded token ids (3..98) and a mask where the first row has two padding tokens (id 0)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(3, 99, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    pad = slice(0, 2) if left_padding else slice(seq - 2, seq)
    attention_mask[0, pad] = 0
    input_ids[0, pad] = 0
    return input_ids, attention_mask


def contract_models() -> dict:
    """name -> (Auto class name, model): the configurations whose saved code must work on every release."""
    import torch

    from custom_transformer import (
        CustomTransformerConfig,
        CustomTransformerForCausalLM,
        CustomTransformerForConditionalGeneration,
        CustomTransformerForImageClassification,
        CustomTransformerForMaskedLM,
    )
    from helpers.models import TINY, tiny_config

    # Weights 15x the default scale, so each generated token depends on the whole prompt: with the default
    # 0.02, the no-preset decoder's greedy tokens only repeat the last one, and a cache that drops keys goes unseen.
    init = {"initializer_range": 0.3}
    configs = {
        "llama": ("AutoModelForCausalLM", CustomTransformerForCausalLM, tiny_config("llama", **init)),
        "gpt2": ("AutoModelForCausalLM", CustomTransformerForCausalLM, tiny_config("gpt2", **init)),
        # No preset: every switch at its default (it gave garbage logits under 5.3.0).
        "decoder-defaults": (
            "AutoModelForCausalLM",
            CustomTransformerForCausalLM,
            CustomTransformerConfig(is_decoder=True, **{**TINY, **init}),
        ),
        "bert": ("AutoModelForMaskedLM", CustomTransformerForMaskedLM, tiny_config("bert", **init)),
        # The encoder-decoders: the paper's interleaved sinusoids, and BART's learned positions and embedding norm.
        "vaswani": ("AutoModelForSeq2SeqLM", CustomTransformerForConditionalGeneration, tiny_config("vaswani", **init)),
        "bart": ("AutoModelForSeq2SeqLM", CustomTransformerForConditionalGeneration, tiny_config("bart", **init)),
        "vit": (
            "AutoModelForImageClassification",
            CustomTransformerForImageClassification,
            tiny_config("vit", num_labels=3, **init),
        ),
    }
    models = {}
    for name, (auto_name, model_class, config) in configs.items():
        torch.manual_seed(0)
        models[name] = (auto_name, model_class(config).eval())
    return models


def save_contract_checkpoints(root: Path) -> Path:
    """Save every contract model under `root` with what it must reproduce; returns the cases file."""
    import torch

    from helpers.models import make_pixels
    from helpers.word_tokenizer import word_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    input_ids, attention_mask = token_batch(left_padding=False)
    cases = {"checkpoints": {}}
    for name, (auto_name, model) in contract_models().items():
        folder = root / name
        model.save_pretrained(folder)
        inputs = (
            {"pixel_values": make_pixels(config=model.config)}
            if model.main_input_name == "pixel_values"
            else {"input_ids": input_ids, "attention_mask": attention_mask}
        )
        if model.config.is_encoder_decoder:  # the decoder reads the source back as its target so far
            inputs |= {"decoder_input_ids": input_ids, "decoder_attention_mask": attention_mask}
        with torch.no_grad():
            out = model(**inputs)
        case = {"folder": str(folder), "auto_classes": [auto_name], "compare_with": auto_name, "inputs": inputs}
        case["expected"] = out[0]
        if model.can_generate():
            # A decoder continues the left-padded prompt; an encoder-decoder writes after its start token.
            prompt_ids, prompt_mask = token_batch(left_padding=not model.config.is_encoder_decoder)
            new_tokens_from = 1 if model.config.is_encoder_decoder else prompt_ids.shape[1]
            with torch.no_grad():
                generated = model.generate(
                    input_ids=prompt_ids,
                    attention_mask=prompt_mask,
                    do_sample=False,
                    max_new_tokens=MAX_NEW_TOKENS,
                    pad_token_id=model.config.pad_token_id,
                    use_cache=False,
                )
            case["generate"] = {
                "input_ids": prompt_ids,
                "attention_mask": prompt_mask,
                "new_tokens_from": new_tokens_from,
                "expected_new_tokens": generated[:, new_tokens_from:],
            }
        if model.config.is_encoder_decoder:  # the pipeline transformers 5 removed comes with the checkpoint
            tokenizer = word_tokenizer()
            tokenizer.save_pretrained(folder)
            with torch.no_grad():
                translated = model.generate(**tokenizer(SENTENCE, return_tensors="pt"), max_new_tokens=MAX_NEW_TOKENS)
            case["pipeline"] = {
                "task": "translation",
                "text": SENTENCE,
                "max_new_tokens": MAX_NEW_TOKENS,
                "expected": [{"translation_text": tokenizer.decode(translated[0], skip_special_tokens=True)}],
            }
        cases["checkpoints"][name] = case
    cases["refuse_without_trust"] = str(root / "llama")
    path = root / "cases.pt"
    torch.save(cases, path)
    return path


def run_contract(cases: Path, workdir: Path, env: dict, timeout: int = 900) -> dict:
    """Run the contract runner with this venv's python in `env` (from `transformers_releases.python_env`).

    Runs from `workdir`, away from the repository, so nothing imports from the checkout by accident.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    result = workdir / "contract-result.json"
    result.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, str(RUNNER), str(cases), str(result)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"the contract runner failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(result.read_text())


def contract_failures(results: dict, expect_no_deprecations: bool) -> list[str]:
    """Every way the results break the contract, one line each (empty: it holds)."""
    failures = []
    for key, entry in results["loads"].items():
        if "error" in entry:
            failures.append(f"{key}: {entry['error']}")
            continue
        if not entry["module"].startswith("transformers_modules."):
            failures.append(f"{key}: loaded {entry['module']}, not the checkpoint's own code")
        if entry.get("max_abs_diff", 0.0) > LOGITS_TOLERANCE:
            failures.append(f"{key}: outputs differ by {entry['max_abs_diff']:.3g} from before saving")
    for name, generations in results["generations"].items():
        for mode in GENERATION_MODES:
            got = generations.get(mode, {"error": "not run"})
            if "error" in got:
                failures.append(f"{name} generate {mode}: {got['error']}")
            elif not got["equals_expected"]:
                failures.append(f"{name} generate {mode}: {got['tokens']} != the tokens generated before saving")
    for name, got in results.get("pipelines", {}).items():
        if "error" in got or not got["equals_expected"]:
            failures.append(f"{name} pipeline: {got.get('error') or got['answer']} != what generate gave before saving")
    if "without_trust" in results and "trust_remote_code=True" not in results["without_trust"]:
        failures.append(f"loading without trust_remote_code did not refuse: {results['without_trust']}")
    if expect_no_deprecations:
        failures += [f"deprecation ({d['category']} at {d['source']}): {d['message']}" for d in results["deprecations"]]
    return failures
