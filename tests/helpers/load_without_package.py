"""Run in a fresh interpreter: load saved checkpoints where `custom_transformer` cannot be imported.

Usage: python load_without_package.py CASES.pt RESULT.json
CASES.pt holds the inputs and, per checkpoint folder, the Auto class to load it with and the outputs the
model gave before saving. Writes what each load produced: the class's module, and the max abs difference.
"""

import importlib.abc
import json
import sys


class BlockPackage(importlib.abc.MetaPathFinder):
    """Make `import custom_transformer` fail, as on a machine where the package is not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "custom_transformer" or name.startswith("custom_transformer."):
            raise ImportError(f"{name} is blocked: this process simulates a machine without the package")
        return None


sys.meta_path.insert(0, BlockPackage())

import torch  # noqa: E402
import transformers  # noqa: E402


def first_output(out):
    return out.start_logits if "start_logits" in out else out[0]


def main(cases_path: str, result_path: str):
    cases = torch.load(cases_path)
    inputs = cases["inputs"]
    results = {"transformers_version": transformers.__version__, "loads": {}}
    for folder, case in cases["checkpoints"].items():
        for auto_name in case["auto_classes"]:
            auto_class = getattr(transformers, auto_name)
            entry = {}
            try:
                model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
                entry["module"] = type(model).__module__
                entry["class"] = type(model).__name__
                if auto_name == case["compare_with"]:
                    with torch.no_grad():
                        got = first_output(model(**inputs))
                    entry["max_abs_diff"] = (got - case["expected"]).abs().max().item()
            except Exception as error:  # reported to the test, which shows it
                entry["error"] = f"{type(error).__name__}: {error}"
            results["loads"][f"{folder}::{auto_name}"] = entry
    if "refuse_without_trust" in cases:
        try:
            transformers.AutoModel.from_pretrained(cases["refuse_without_trust"], trust_remote_code=False)
            results["without_trust"] = "loaded"
        except Exception as error:
            results["without_trust"] = f"{type(error).__name__}: {error}"
    with open(result_path, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(*sys.argv[1:3])
