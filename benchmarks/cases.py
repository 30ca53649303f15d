"""What runs inside each fresh benchmark process: build the checkpoints, then measure one thing on one model.

`bench.py` (the command) never imports this module; it names a function here and runs it in a process forked
from a server that has only imported this module, so every case starts without the memory, caches or compiled
code of the one before. Each measurement is bracketed by a small fixed matmul (`noise_probe`), which tells the
parent whether the machine's speed changed during it.

The measured models are loaded the way a user loads them, `AutoModel...from_pretrained(folder,
trust_remote_code=True)`: ours runs the code its checkpoint carries. `custom_transformer` itself is imported only
by `build_checkpoints`, because importing it registers the local classes with the Auto classes, which would then
be loaded instead of the checkpoint's code.
"""

import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForSeq2SeqLM,
    CompileConfig,
)
from transformers.pytorch_utils import Conv1D

transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would bury the progress lines

# The Auto class that loads each family's measured model (the reference class is the family's, in
# custom_transformer.families); decoders and encoder-decoders are also measured generating.
AUTO_CLASSES = {
    "llama": AutoModelForCausalLM,
    "gpt2": AutoModelForCausalLM,
    "bert": AutoModelForMaskedLM,
    "vit": AutoModelForImageClassification,
    "marian": AutoModelForSeq2SeqLM,
}
# Image families read `seq` as patches: RGB images of PATCH x PATCH patches, sqrt(seq) of them a side ([CLS] aside).
PATCH = 16
IMAGE_CLASSES = 10

# Greedy decoding of weights drawn with transformers' usual std 0.02 repeats one token forever, which makes the
# ours-vs-reference token check meaningless; 0.05 gives varied tokens. Speed does not depend on weight values.
INITIALIZER_RANGE = 0.05
SEED = 0


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: the reference with random weights, and ours converted from it


def build_checkpoints(families: list[str], shape: dict, root: str) -> dict[str, dict]:
    """Save each family's reference model and its conversion to ours under `root`: same shapes, same weights."""
    return {family: _build_checkpoint(family, shape, root) for family in families}


def _build_checkpoint(family: str, shape: dict, root: str) -> dict:
    """The reference model and ours, saved under `root`, with the facts the parent needs about them.

    The reference config is derived from our preset config (so the preset's switches, GQA included, are what is
    compared), then `custom_transformer.convert` turns the saved reference into ours with its key rules, and the
    converted config is checked against the one we asked for.
    """
    from custom_transformer.convert import convert
    from custom_transformer.families import FAMILIES

    config = _our_config(family, shape)
    torch.manual_seed(SEED)
    reference = FAMILIES[family].reference(FAMILIES[family].reference_config(config))
    folders = {"reference": f"{root}/{family}-reference", "ours": f"{root}/{family}-ours"}
    reference.save_pretrained(folders["reference"])
    ours = convert(folders["reference"], folders["ours"])
    _check_same_config(config, ours.config)
    return {
        **folders,
        "reference_class": type(reference).__name__,
        "decoder": reference.can_generate(),  # decoders and encoder-decoders are also measured generating
        "forward_flops_per_token": forward_flops_per_token(reference, shape["seq"]),
        "matmul_weight_bytes": sum(m.weight.nbytes for m in reference.modules() if isinstance(m, (nn.Linear, Conv1D))),
    }


def _our_config(family: str, shape: dict):
    """The preset at the benchmark's size; the MLP keeps the preset's width ratio (SwiGLU's 2.69x for llama)."""
    from custom_transformer import PRESETS, CustomTransformerConfig

    preset = PRESETS[family]
    return CustomTransformerConfig.from_preset(
        family,
        hidden_size=shape["hidden"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        intermediate_size=preset["intermediate_size"] * shape["hidden"] // preset["hidden_size"],
        initializer_range=INITIALIZER_RANGE,
        **(_image_fields(shape) if preset.get("input_embedding") == "patches" else _token_fields(preset, shape)),
    )


def _token_fields(preset: dict, shape: dict) -> dict:
    vocab_size = shape["vocab"] or preset["vocab_size"]
    # GPT-2's special token 50256 does not exist in a smaller vocabulary: use its last id instead.
    special_tokens = {
        name: min(preset[name], vocab_size - 1)
        for name in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
        if preset.get(name) is not None
    }
    return {"vocab_size": vocab_size, **special_tokens}


def _image_fields(shape: dict) -> dict:
    return {"image_size": PATCH * math.isqrt(shape["seq"]), "patch_size": PATCH, "num_labels": IMAGE_CLASSES}


def _check_same_config(wanted, converted):
    """A mapping that lost a field would compare two different architectures and report it as speed."""
    ignored = {"architectures", "auto_map", "transformers_version", "dtype", "torch_dtype"}
    converted_fields = converted.to_dict()
    differing = {
        name: (value, converted_fields.get(name))
        for name, value in wanted.to_dict().items()
        if name not in ignored and converted_fields.get(name) != value
    }
    if differing:
        raise ValueError(f"The converted config differs from the benchmarked one (wanted, got): {differing}")


def forward_flops_per_token(model: nn.Module, seq: int) -> float:
    """Forward FLOPs per token: 2 per matmul weight, plus QK^T and AV over the whole sequence (PaLM's count)."""
    matmul_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, Conv1D)))
    config = model.config
    layers = config.num_hidden_layers
    attention_width = config.num_attention_heads * (config.hidden_size // config.num_attention_heads)
    return 2 * matmul_weights + 4 * layers * seq * attention_width


# ----------------------------------------------------------------------------------------------------------------
# Measurements: each returns lists of per-repeat values (the parent takes medians) and its noise probes


def run_case(kind: str, threads: int | None = None, **kwargs) -> dict:
    """Run one measurement between two noise probes."""
    if threads:
        torch.set_num_threads(threads)
    before = noise_probe()
    result = MEASUREMENTS[kind](**kwargs)
    return {**result, "probe_s": [before, noise_probe()]}


def load(folder: str, family: str) -> nn.Module:
    return AUTO_CLASSES[family].from_pretrained(folder, trust_remote_code=True, attn_implementation="sdpa")


def inputs_and_labels(model: nn.Module, batch: int, seq: int) -> tuple[dict, torch.Tensor, int]:
    """The same inputs for ours and the reference: token ids (their own labels; an encoder-decoder reads them on both
    sides), or images (isqrt(seq) patches a side) and class labels; and the tokens in the batch (patches for images,
    target tokens for an encoder-decoder)."""
    generator = torch.Generator().manual_seed(SEED)
    if model.main_input_name == "pixel_values":
        side = math.isqrt(seq)
        pixels = torch.randn(batch, model.config.num_channels, PATCH * side, PATCH * side, generator=generator)
        labels = torch.randint(0, IMAGE_CLASSES, (batch,), generator=generator)
        return {"pixel_values": pixels}, labels, batch * side * side
    ids = random_ids(batch, seq, model.config.vocab_size)
    decoder = {"decoder_input_ids": ids} if model.config.is_encoder_decoder else {}
    return {"input_ids": ids, **decoder}, ids, batch * seq


def random_ids(batch: int, length: int, vocab_size: int) -> torch.Tensor:
    """The same ids for ours and the reference, so their generations can be compared token for token."""
    return torch.randint(0, vocab_size, (batch, length), generator=torch.Generator().manual_seed(SEED))


def time_repeats(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of `repeats` calls, after `warmup` untimed calls that fill caches and lazy imports."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def measure_train(folder: str, family: str, batch: int, seq: int, repeats: int, **_) -> dict:
    """Tokens/s of forward + backward + AdamW step, and the peak RSS growth over those steps.

    torch has no CPU allocator statistics, so memory is the process's resident-set high-water mark (VmHWM),
    reset just before the first step: the growth covers gradients, AdamW state and activations.
    """
    model = load(folder, family).train()
    inputs, labels, tokens = inputs_and_labels(model, batch, seq)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    baseline = reset_peak_rss()
    times = time_repeats(step, repeats)
    return {"tok_s": [tokens / t for t in times], "peak_mib": (peak_rss() - baseline) / 2**20}


def measure_forward(folder: str, family: str, batch: int, seq: int, repeats: int, **_) -> dict:
    """Tokens/s of one forward pass over the whole batch, logits included, under `inference_mode`."""
    model = load(folder, family).eval()
    inputs, _, tokens = inputs_and_labels(model, batch, seq)
    with torch.inference_mode():
        times = time_repeats(lambda: model(**inputs), repeats)
    return {"tok_s": [tokens / t for t in times]}


def measure_generate(
    folder: str, family: str, batch: int, prompt: int, new_tokens: int, cache: str, repeats: int, **_
) -> dict:
    """New tokens/s of greedy (or beam) `generate`, prefill included, with exactly `new_tokens` per sequence; an
    encoder-decoder reads the prompt as its source and writes after its start token."""
    model = load(folder, family).eval()
    ids = random_ids(batch, prompt, model.config.vocab_size)
    options = {"num_beams": 1, **generate_options(cache)}
    new_from = 1 if model.config.is_encoder_decoder else prompt
    generated = []

    def generate():
        generated[:] = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=model.config.eos_token_id,
            **options,
        )[:, new_from:].tolist()

    times = time_repeats(generate, repeats)
    return {"tok_s": [batch * new_tokens / t for t in times], "tokens": generated}


def generate_options(cache: str) -> dict:
    """`generate` keywords for a cache: the default dynamic one, a static one, or a static one with the decode
    step compiled by generate itself (fullgraph; `_compile_all_devices` is its switch for CPU, where it does not
    compile by default). The warm-up call pays the compilation."""
    if cache == "dynamic":
        return {}
    if cache == "beam4":
        return {"num_beams": 4}
    if cache == "static":
        return {"cache_implementation": "static"}
    compile_config = CompileConfig(fullgraph=True, mode="default")
    compile_config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": compile_config}


def measure_load(folder: str, family: str, repeats: int, **_) -> dict:
    """Seconds of `from_pretrained(..., trust_remote_code=True)`; the first load (which also imports the
    checkpoint's code) is reported apart, the rest are the repeats."""
    start = time.perf_counter()
    load(folder, family)
    first = time.perf_counter() - start
    return {"seconds": time_repeats(lambda: load(folder, family), repeats, warmup=0), "first_s": first}


MEASUREMENTS = {
    "train": measure_train,
    "forward": measure_forward,
    "generate": measure_generate,
    "load": measure_load,
}


# ----------------------------------------------------------------------------------------------------------------
# The machine: speed probes, peak, memory, description


def noise_probe() -> float:
    """Median seconds of a small fixed matmul: it slows down when another process takes a core."""
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(SEED))
    return statistics.median(time_repeats(lambda: a @ a, repeats=40, warmup=5))


def machine_peaks(threads: int | None = None, repeats: int = 5) -> dict[str, float]:
    """This machine's speed limits now: matmul FLOP/s (the MFU denominator) and memory bandwidth (what bounds
    greedy decoding at batch 1, which reads every weight once per token)."""
    if threads:
        torch.set_num_threads(threads)
    return {"matmul_flops": matmul_peak_flops(repeats), "copy_bytes_s": copy_bandwidth(repeats)}


def matmul_peak_flops(repeats: int, n: int = 2048) -> float:
    """FLOP/s of the fastest of a few large fp32 matmuls."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / min(time_repeats(lambda: a @ b, repeats))


def copy_bandwidth(repeats: int, mebibytes: int = 256) -> float:
    """Bytes/s (read + written) of the fastest copy of a buffer far larger than the CPU caches."""
    source = torch.ones(mebibytes * 2**20 // 4)
    target = torch.empty_like(source)
    return 2 * source.nbytes / min(time_repeats(lambda: target.copy_(source), repeats))


def weight_layouts(family: str, shape: dict, rows: int, threads: int | None, repeats: int = 200) -> list[dict]:
    """Seconds per product of `rows` activations with each distinct weight of the preset at `shape`, in
    nn.Linear's layout (`[out, in]`, `x @ W.T`) and stored transposed (`[in, out]`, `x @ W`). Copies of each weight
    are cycled through more memory than the CPU caches hold, so every product streams its weight as decoding does."""
    if threads:
        torch.set_num_threads(threads)
    config = _our_config(family, shape)
    hidden, inner, vocab = config.hidden_size, config.intermediate_size, config.vocab_size
    results = []
    for name, (out_features, in_features) in {
        "attention projection": (hidden, hidden),
        "MLP in": (inner, hidden),
        "MLP out": (hidden, inner),
        "LM head": (vocab, hidden),
    }.items():
        nbytes = out_features * in_features * 4
        copies = max(2, -(-256 * 2**20 // nbytes))  # 256 MiB in all
        weights = [torch.randn(out_features, in_features) for _ in range(copies)]
        transposed = [weight.t().contiguous() for weight in weights]
        x = torch.randn(rows, in_features)
        times = {
            "[out, in]": _cycling_median(lambda w, x=x: nn.functional.linear(x, w), weights, repeats),
            "[in, out]": _cycling_median(lambda w, x=x: x @ w, transposed, repeats),
        }
        results.append({"weight": name, "shape": [out_features, in_features], "bytes": nbytes, "seconds": times})
    return results


def _cycling_median(product: Callable, weights: list[torch.Tensor], repeats: int) -> float:
    """Median seconds of `product(weight)`, each call on the next of `weights` (so none is still in cache)."""
    calls = iter(range(10**9))
    return statistics.median(
        time_repeats(lambda: product(weights[next(calls) % len(weights)]), repeats=repeats, warmup=len(weights))
    )


def reset_peak_rss() -> int:
    """Reset the kernel's resident-set high-water mark (Linux: clear_refs 5); returns the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}: peak memory needs Linux")


def machine(threads: int | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Profile: where a decode step's time goes


def profile_decode(folder: str, family: str, prompt: int, new_tokens: int, rows: int, threads: int | None) -> str:
    """torch.profiler's table of ops by self CPU time over greedy `generate` at batch 1 with a short prompt, so
    the decode steps, not the prefill, dominate. The issue asks for this before any optimisation."""
    if threads:
        torch.set_num_threads(threads)
    model = load(folder, family).eval()
    ids = random_ids(1, prompt, model.config.vocab_size)
    options = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, num_beams=1)
    options["pad_token_id"] = model.config.eos_token_id
    model.generate(ids, **options)  # warm-up
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        start = time.perf_counter()
        model.generate(ids, **options)
        seconds = time.perf_counter() - start
    averages = profiler.key_averages()
    ops_ms = sum(event.self_cpu_time_total for event in averages) / 1e3
    return (
        f"{new_tokens} new tokens in {seconds * 1e3:.0f} ms under the profiler ({seconds / new_tokens * 1e3:.1f} "
        f"ms/token); torch ops account for {ops_ms:.0f} ms, the rest is Python between them\n"
        + averages.table(sort_by="self_cpu_time_total", row_limit=rows)
    )
