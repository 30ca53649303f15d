"""Run in a fresh interpreter: what a person without `custom_transformer` gets from saved checkpoints.

Usage: python checkpoint_contract.py CASES.pt RESULT.json

`import custom_transformer` is blocked, so every class must come from the checkpoint's own copy of the code
(`trust_remote_code=True`). CASES.pt holds, per checkpoint: its folder, the Auto classes to load it with,
the inputs and the first output the model gave before saving, and for the heads that generate a batch (left-padded
for causal LMs) with the greedy tokens it generated without a cache. RESULT.json gets, for whatever transformers is installed:

- ``loads``: per ``name::AutoClass``: the class and its module, the max abs difference of the first output;
- ``generations``: per generating checkpoint (causal LM, encoder-decoder) and cache mode (``use_cache=False``, ``dynamic``, ``static``): the
  new tokens and whether they equal the expected ones;
- ``deprecations``: every deprecation warning, and every log record of ``transformers`` (or of the loaded
  ``transformers_modules``) that mentions deprecation, de-duplicated, with its source;
- ``log_warnings``: every other warning those loggers gave (not checked; for diagnosing a failing release);
- ``pipelines``: per encoder-decoder checkpoint, what the translation pipeline it ships answered;
- ``without_trust``: what loading without ``trust_remote_code`` did (it must refuse).

Every failure is recorded as a string next to its entry; the run goes on to the next one.
"""

import json
import logging
import runpy
import sys
import traceback
import warnings
from pathlib import Path

# Before any checkpoint loads: `import custom_transformer` fails from here on (the project's one blocker).
runpy.run_path(str(Path(__file__).resolve().parents[2] / "training" / "without_package.py"))

GENERATION_MODES = {  # name -> extra `generate` arguments
    "use_cache=False": {"use_cache": False},
    "dynamic": {},
    "static": {"cache_implementation": "static"},
}
MAX_NEW_TOKENS = 8


def short_source(filename: str, lineno: int) -> str:
    """`transformers/...py:N` for the library (wherever installed), `<checkpoint code>/file.py:N` for ours."""
    path = filename.replace("\\", "/")
    if "/transformers_modules/" in path:
        return f"<checkpoint code>/{path.rsplit('/', 1)[-1]}:{lineno}"
    if "/transformers/" in path:
        return f"transformers/{path.rsplit('/transformers/', 1)[-1]}:{lineno}"
    return f"{path}:{lineno}"


# Frames that only relay a log record: the record's own pathname points at them, not at whoever logged.
_RELAYS = (logging.__file__, "/transformers/utils/logging.py", "/functools.py")


class DeprecationSignals(logging.Handler):
    """Collects deprecation warnings and log records that mention deprecation, each once, with their source."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.during = "import"
        self.found = {}
        self.log_warnings = {}  # message -> the step that first logged it

    def add(self, kind: str, category: str, message: str, source: str):
        key = (kind, category, message, source)
        if key not in self.found:
            self.found[key] = {
                "kind": kind,
                "category": category,
                "message": message,
                "source": source,
                "first_during": self.during,
            }

    def emit(self, record: logging.LogRecord):
        message = record.getMessage()
        if record.levelno >= logging.WARNING:  # kept for diagnosis, e.g. "... so we will NOT tie them"
            self.log_warnings.setdefault(message[:500], self.during)
        if "deprecat" not in message.lower():
            return
        # `logger.warning_once` records point into transformers' logging module: name the code that logged.
        frame = sys._getframe(1)
        while frame is not None and (
            frame.f_code.co_filename.endswith(_RELAYS) or frame.f_code.co_filename == __file__
        ):
            frame = frame.f_back
        filename, lineno = (frame.f_code.co_filename, frame.f_lineno) if frame else (record.pathname, record.lineno)
        self.add("log", record.levelname, message, short_source(filename, lineno))

    def take_warnings(self, caught: list):
        for warning in caught:
            message = str(warning.message)
            if issubclass(warning.category, (FutureWarning, DeprecationWarning)) or "deprecat" in message.lower():
                self.add("warning", warning.category.__name__, message, short_source(warning.filename, warning.lineno))
        caught.clear()


def describe(error: BaseException) -> str:
    """`Type: first line of the message [at the innermost frames]`, one line, so a table row can show it."""
    lines = str(error).strip().splitlines() or [""]
    message = lines[0] + (" ..." if len(lines) > 1 else "")
    frames = traceback.extract_tb(error.__traceback__)[-3:]
    where = " <- ".join(f"{short_source(f.filename, f.lineno)} {f.name}" for f in frames[::-1])
    return f"{type(error).__name__}: {message} [at {where}]"


def first_output(out):
    return out.start_logits if "start_logits" in out else out[0]


def max_abs_diff(got, expected) -> float:
    if got.shape != expected.shape:
        raise ValueError(f"output shape {tuple(got.shape)} != expected {tuple(expected.shape)}")
    diff = (got.float() - expected.float()).abs()
    diff[got.isnan() & expected.isnan()] = 0.0  # a fully masked row may be NaN on both sides
    return diff.nan_to_num(nan=float("inf")).max().item()


def main(cases_path: str, result_path: str):
    signals = DeprecationSignals()
    for logger_name in ("transformers", "transformers_modules"):  # the library, and the checkpoint code it loads
        logging.getLogger(logger_name).addHandler(signals)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import torch
        import transformers

        signals.take_warnings(caught)
        results = run(torch, transformers, torch.load(cases_path), signals, caught)
    results["deprecations"] = list(signals.found.values())
    results["log_warnings"] = [{"message": m, "first_during": d} for m, d in signals.log_warnings.items()]
    with open(result_path, "w") as f:
        json.dump(results, f, indent=2)


def run(torch, transformers, cases: dict, signals: DeprecationSignals, caught: list) -> dict:
    # The library logger filters below WARNING by default; let deprecation notes at INFO reach our handler
    # (transformers' own stderr handler keeps its level, so the output does not change).
    library_logger = logging.getLogger("transformers")
    for handler in library_logger.handlers:
        if handler is not signals and handler.level == logging.NOTSET:
            handler.setLevel(library_logger.getEffectiveLevel())
    library_logger.setLevel(logging.INFO)

    results = {"transformers_version": transformers.__version__, "torch_version": torch.__version__}
    results.update(loads={}, generations={})
    default_inputs = cases.get("inputs")
    for name, case in cases["checkpoints"].items():
        for auto_name in case["auto_classes"]:
            key = f"{name}::{auto_name}"
            signals.during = key
            entry = results["loads"][key] = {}
            model = None
            try:
                model = getattr(transformers, auto_name).from_pretrained(case["folder"], trust_remote_code=True)
                model.eval()
                entry["module"] = type(model).__module__
                entry["class"] = type(model).__name__
                if auto_name == case["compare_with"]:
                    with torch.no_grad():
                        got = first_output(model(**case.get("inputs", default_inputs)))
                    entry["max_abs_diff"] = max_abs_diff(got, case["expected"])
            except Exception as error:  # recorded for the caller, who shows it
                entry["error"] = describe(error)
            signals.take_warnings(caught)
            if model is not None and "generate" in case and auto_name == case["compare_with"]:
                results["generations"][name] = generate_every_way(torch, model, case["generate"], signals, caught)
        if "pipeline" in case:
            results.setdefault("pipelines", {})[name] = shipped_pipeline(transformers, case, signals, caught)
    if "refuse_without_trust" in cases:
        signals.during = "refuse_without_trust"
        try:
            transformers.AutoModel.from_pretrained(cases["refuse_without_trust"], trust_remote_code=False)
            results["without_trust"] = "loaded"
        except Exception as error:
            results["without_trust"] = f"{type(error).__name__}: {error}"
        signals.take_warnings(caught)
    return results


def shipped_pipeline(transformers, case: dict, signals: DeprecationSignals, caught: list) -> dict:
    """The pipeline the checkpoint ships (`custom_pipelines`), by task name, from the folder's own code."""
    spec = case["pipeline"]
    signals.during = f"pipeline {spec['task']}"
    try:
        pipe = transformers.pipeline(spec["task"], model=case["folder"], trust_remote_code=True)
        answer = pipe(spec["text"], max_new_tokens=spec["max_new_tokens"], do_sample=False)
        result = {"answer": answer, "equals_expected": answer == spec["expected"]}
    except Exception as error:
        result = {"error": describe(error), "equals_expected": False}
    signals.take_warnings(caught)
    return result


def generate_every_way(torch, model, case: dict, signals: DeprecationSignals, caught: list) -> dict:
    """Greedy generation on a left-padded batch without a cache, with the default cache and a static one."""
    expected = case["expected_new_tokens"].tolist()
    new_tokens_from = case["new_tokens_from"]  # the prompt's length, or 1 (the decoder's start token)
    generations = {}
    for mode, extra in GENERATION_MODES.items():
        signals.during = f"generate {mode}"
        try:
            with torch.no_grad():
                out = model.generate(
                    input_ids=case["input_ids"],
                    attention_mask=case["attention_mask"],
                    do_sample=False,
                    max_new_tokens=MAX_NEW_TOKENS,
                    pad_token_id=model.config.pad_token_id,
                    **extra,
                )
            tokens = out[:, new_tokens_from:].tolist()
            generations[mode] = {"tokens": tokens, "equals_expected": tokens == expected}
        except Exception as error:
            generations[mode] = {"error": describe(error), "equals_expected": False}
        signals.take_warnings(caught)
    return generations


if __name__ == "__main__":
    main(*sys.argv[1:3])
