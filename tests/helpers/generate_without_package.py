"""Run in a fresh interpreter: greedy generation from a causal checkpoint where `custom_transformer` cannot be imported.

Usage: python generate_without_package.py CHECKPOINT INPUTS.json RESULT.json [REVISION]
CHECKPOINT is a folder or a Hub repo id (then REVISION pins the commit; HF_ENDPOINT says where the Hub is).
INPUTS.json holds a left-padded batch: {"input_ids": [[...]], "attention_mask": [[...]], "max_new_tokens": N}.
Writes RESULT.json: the loaded class's module, the transformers version, the forward logits of the batch
(no cache), and the greedy continuations with the default (dynamic) cache, with a static cache and with
`use_cache=False`. Exceptions are recorded per mode rather than raised, so the test can show them.
"""

import json
import runpy
import sys
from pathlib import Path

import torch
import transformers

# Before any checkpoint loads: `import custom_transformer` fails from here on (the project's one blocker).
runpy.run_path(str(Path(__file__).resolve().parents[2] / "training" / "without_package.py"))

MODES = {
    "dynamic_cache": {},  # what generate() does by default
    "static_cache": {"cache_implementation": "static"},
    "no_cache": {"use_cache": False},
}


def main(checkpoint: str, inputs_path: str, result_path: str, revision: str | None = None):
    with open(inputs_path) as f:
        spec = json.load(f)
    batch = {name: torch.tensor(spec[name]) for name in ("input_ids", "attention_mask")}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        checkpoint, trust_remote_code=True, revision=revision
    ).eval()
    result = {
        "transformers_version": transformers.__version__,
        "module": type(model).__module__,
        "class": type(model).__name__,
    }
    with torch.no_grad():
        result["logits"] = model(**batch, use_cache=False).logits.tolist()
        for mode, kwargs in MODES.items():
            try:
                out = model.generate(
                    **batch,
                    max_new_tokens=spec["max_new_tokens"],
                    min_new_tokens=spec["max_new_tokens"],  # never stop early at eos: compare every step
                    do_sample=False,
                    **kwargs,
                )
                result[mode] = out[:, batch["input_ids"].shape[1] :].tolist()
            except Exception as error:  # reported to the test, which shows it
                result[mode] = f"{type(error).__name__}: {error}"
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:5])
