"""custom_transformer's presets against the transformers models they reproduce, measured side by side in one run.

    python benchmarks/bench.py [--quick] [--sizes small,medium] [--families llama,gpt2,bert] [--json out.json]
    python benchmarks/bench.py --profile      # torch.profiler over greedy decoding of our llama preset, batch 1
    python benchmarks/bench.py --layouts      # batch-1 matmul time per weight layout (what bounds decoding)

llama vs LlamaForCausalLM, gpt2 vs GPT2LMHeadModel, bert vs BertForMaskedLM, vit vs ViTForImageClassification,
marian vs MarianMTModel (the ids are source and target; generation translates the prompt), all sdpa, fp32: same shapes and the same weights (the reference is saved with random weights and converted to ours by
custom_transformer.convert). For vit a "token" is a 16x16 patch of an RGB image isqrt(seq) patches a side (seq 256:
256x256 pixels, 256 patches and [CLS]), so images/s is tok/s / 256 (medium: 22x22 patches, / 484).
Each measurement runs in a fresh process; see benchmarks/README.md for the columns and how noise is handled.
This file only orchestrates (standard library only); what runs in the measuring processes is in cases.py.
"""

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

# The issue's sizes. Medium is GPT-2 small / BERT base with the presets' own vocabularies, at batch 2 so that a
# training step takes seconds, not a minute, on 2 cores; at the small size an 8000-token vocabulary keeps the LM
# head from dominating the layers being compared.
SIZES = {
    "small": {"hidden": 256, "layers": 4, "heads": 8, "seq": 256, "batch": 8, "vocab": 8000, "prompt": 64},
    "medium": {"hidden": 768, "layers": 12, "heads": 12, "seq": 512, "batch": 2, "vocab": None, "prompt": 128},
}
FAMILIES = ("llama", "gpt2", "bert", "vit", "marian")
# (batch, cache): "compiled" is the documented fast path, a static cache with generate's own torch.compile;
# "beam4" is beam search (4 beams, dynamic cache), what translation uses.
GENERATIONS = (
    *((batch, cache) for batch in (1, 8) for cache in ("dynamic", "static", "compiled")),
    (1, "beam4"),
)
IMPLEMENTATIONS = ("ours", "reference")


@dataclass(frozen=True)
class Settings:
    repeats: int = 5  # timed calls per measurement, after one warm-up call
    new_tokens: int = 64  # generated per sequence
    tries: int = 3  # measurements of a disturbed case (see `measure`) before the steadiest is kept and marked
    tolerance: float = 0.2  # allowed noise-probe drift, and spread of the repeats (max / min - 1)
    threads: int | None = None  # torch threads in the measuring processes; None: torch's default
    compiled: bool = True  # measure the compiled fast path (inductor compiles for a minute per case on 2 cores)


QUICK = Settings(repeats=3, new_tokens=16, tries=2, compiled=False)

# Table columns: (header, case, value). "mfu" is derived from the case's tok/s; ratios are ours / reference.
COLUMNS = (
    ("train tok/s", "train", "tok_s"),
    ("train MFU", "train", "mfu"),
    ("train peak MiB", "train", "peak_mib"),
    ("forward tok/s", "forward", "tok_s"),
    ("forward MFU", "forward", "mfu"),
    *((f"gen b{batch} {cache} tok/s", f"generate b{batch} {cache}", "tok_s") for batch, cache in GENERATIONS),
    ("load s", "load", "seconds"),
)
FORMATS = {"tok_s": "{:,.0f}", "mfu": "{:.1%}", "peak_mib": "{:,.0f}", "seconds": "{:.3f}"}
# Training does a forward and a backward that costs twice the forward: 3x the forward FLOPs per token.
FLOPS_FACTOR = {"train": 3, "forward": 1}


# ----------------------------------------------------------------------------------------------------------------
# Fresh processes


def fresh_process(function: str, **kwargs):
    """Call `cases.<function>(**kwargs)` in a new process and return its result.

    The process is forked from multiprocessing's fork server, which has imported cases.py (torch, transformers)
    and run nothing: each case starts in a second instead of after a 5-second import, yet shares no memory
    high-water mark, allocator cache, thread pool or compiled code with the case before it.
    """
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_run_in_child, args=(sender, function, kwargs))
    process.start()
    sender.close()
    try:
        ok, value = receiver.recv()
    except EOFError:  # killed (out of memory, a signal) before it could answer
        ok, value = False, f"the process died with exit code {process.exitcode}"
    process.join()
    if not ok:
        raise RuntimeError(f"cases.{function}({kwargs}) failed:\n{value}")
    return value


def _run_in_child(sender, function: str, kwargs: dict):
    try:
        if "cases" not in sys.modules:  # the fork server swallows a failed preload: each case would import torch
            raise RuntimeError("the fork server did not preload cases.py (is benchmarks/ on its PYTHONPATH?)")
        import cases

        sender.send((True, getattr(cases, function)(**kwargs)))
    except BaseException:  # noqa: B036 - whatever happened is reported by the parent
        sender.send((False, traceback.format_exc()))


# ----------------------------------------------------------------------------------------------------------------
# Measuring, with the noise check


def measure(kind: str, settings: Settings, **kwargs) -> dict:
    """Run one case, again (in a new process) while it looks disturbed, and keep the steadiest try.

    Disturbed: the noise probes before and after it differ, or its repeats spread, by more than the tolerance.
    The probes catch a machine whose speed changed across the measurement; the spread catches a burst of load
    in the middle of it. `noisy` says whether even the kept try was disturbed.
    """
    tries = []
    while len(tries) < settings.tries and (not tries or tries[-1]["unsteadiness"] > settings.tolerance):
        result = fresh_process("run_case", kind=kind, threads=settings.threads, repeats=settings.repeats, **kwargs)
        tries.append({**result, **unsteadiness(result)})
    kept = min(tries, key=lambda result: result["unsteadiness"])
    return {
        **kept,
        "tries": len(tries),
        "unsteadiness_of_tries": [result["unsteadiness"] for result in tries],
        "noisy": kept["unsteadiness"] > settings.tolerance,
    }


def unsteadiness(result: dict) -> dict[str, float]:
    before, after = result["probe_s"]
    series = result[main_value(result)]
    drift, spread = abs(after - before) / min(before, after), max(series) / min(series) - 1
    return {"drift": drift, "spread": spread, "unsteadiness": max(drift, spread)}


def main_value(result: dict) -> str:
    return "tok_s" if "tok_s" in result else "seconds"


def cases_for(shape: dict, decoder: bool, settings: Settings) -> list[tuple[str, str, dict]]:
    """(name, kind, arguments) of every case of one model: generation only for the models that generate."""
    batch_seq = {"batch": shape["batch"], "seq": shape["seq"]}
    cases = [("train", "train", batch_seq), ("forward", "forward", batch_seq), ("load", "load", {})]
    if decoder:
        for batch, cache in GENERATIONS:
            if cache == "compiled" and not settings.compiled:
                continue
            arguments = {"batch": batch, "prompt": shape["prompt"], "new_tokens": settings.new_tokens, "cache": cache}
            cases.append((f"generate b{batch} {cache}", "generate", arguments))
    return cases


def bench_family(family: str, size: str, checkpoints: dict, settings: Settings, log) -> dict:
    """Every case of one family at one size; ours and the reference alternate so a ratio compares neighbours."""
    report = {
        "reference_class": checkpoints["reference_class"],
        "forward_flops_per_token": checkpoints["forward_flops_per_token"],
        "matmul_weight_bytes": checkpoints["matmul_weight_bytes"],
        "ours": {},
        "reference": {},
    }
    for name, kind, arguments in cases_for(SIZES[size], checkpoints["decoder"], settings):
        for implementation in IMPLEMENTATIONS:
            result = measure(kind, settings, folder=checkpoints[implementation], family=family, **arguments)
            result[main_value(result)] = summary(result[main_value(result)])
            report[implementation][name] = result
            log(f"{size} {family} {implementation} {name}: {describe(result)}")
    if checkpoints["decoder"]:
        report["same_tokens"] = compare_tokens(report)
    return report


def summary(series: list[float]) -> dict:
    return {"median": statistics.median(series), "min": min(series), "max": max(series), "repeats": series}


def add_mfu_and_ratios(report: dict, peak_flops: float):
    """MFU of the median tok/s, once the run's matmul peak is known; then every ours / reference ratio."""
    for implementation in IMPLEMENTATIONS:
        for name, factor in FLOPS_FACTOR.items():
            result = report[implementation][name]
            result["mfu"] = result["tok_s"]["median"] * factor * report["forward_flops_per_token"] / peak_flops
    report["ratios"] = {header: ratio(report, name, value) for header, name, value in COLUMNS if name in report["ours"]}


def add_decode_bound(report: dict, copy_bytes_s: float):
    """Greedy decoding at batch 1 reads every matmul weight once per token: at the measured copy bandwidth that
    bounds it, whatever the code around the matmuls does. Recorded with the share of it each model reaches."""
    if "generate b1 dynamic" not in report["ours"]:
        return
    bound = copy_bytes_s / report["matmul_weight_bytes"]
    report["decode_b1_bound"] = {
        "tok_s": bound,
        **{
            implementation: median(report[implementation]["generate b1 dynamic"], "tok_s") / bound
            for implementation in IMPLEMENTATIONS
        },
    }


def median(result: dict, value: str) -> float:
    number = result[value]
    return number["median"] if isinstance(number, dict) else number


def ratio(report: dict, name: str, value: str) -> float:
    return median(report["ours"][name], value) / median(report["reference"][name], value)


def compare_tokens(report: dict) -> dict[str, str]:
    """Ours and the reference hold the same weights, so greedy decoding must give the same tokens."""
    verdicts = {}
    for name in report["ours"]:
        if name.startswith("generate"):
            ours, reference = report["ours"][name].pop("tokens"), report["reference"][name].pop("tokens")
            verdicts[name] = "identical" if ours == reference else first_difference(ours, reference)
    return verdicts


def first_difference(ours: list[list[int]], reference: list[list[int]]) -> str:
    for row, (a, b) in enumerate(zip(ours, reference)):
        for step, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return f"DIFFER (sequence {row}, new token {step}: {x} vs {y})"
    return "DIFFER (lengths)"


# ----------------------------------------------------------------------------------------------------------------
# Output


def describe(result: dict) -> str:
    """One progress line: the case's main value, how disturbed it looked and how many tries it took."""
    return (
        f"{cell(result, main_value(result))} {main_value(result)}, probe drift {result['drift']:.0%}, "
        f"spread {result['spread']:.0%}, tries {result['tries']}"
    )


def cell(result: dict | None, value: str) -> str:
    if result is None:
        return "–"
    number, form = result[value], FORMATS[value]
    if isinstance(number, dict):
        text = f"{form.format(number['median'])} ({form.format(number['min'])}–{form.format(number['max'])})"
    else:
        text = form.format(number)
    return f"~{text}" if result["noisy"] else text


def table(size: str, families: dict) -> str:
    shape = SIZES[size]
    vocab = shape["vocab"] or "the preset's"
    lines = [
        f"### {size}: hidden {shape['hidden']}, {shape['layers']} layers, {shape['heads']} heads, seq "
        f"{shape['seq']}, batch {shape['batch']}, vocab {vocab}; generation: prompt {shape['prompt']}",
        "",
        "| family | model | " + " | ".join(header for header, _, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]
    for family, report in families.items():
        for implementation, label in (("ours", f"{family} preset"), ("reference", report["reference_class"])):
            cells = [cell(report[implementation].get(name), value) for _, name, value in COLUMNS]
            lines.append(f"| {family} | {label} | " + " | ".join(cells) + " |")
        ratios = [f"{report['ratios'][header]:.2f}" if header in report["ratios"] else "–" for header, _, _ in COLUMNS]
        lines.append(f"| {family} | **ours / ref** | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def footnotes(sizes: dict, settings: Settings) -> str:
    lines = []
    for size, families in sizes.items():
        for family, report in families.items():
            if "same_tokens" in report:
                verdicts = ", ".join(
                    f"{name.removeprefix('generate ')} {verdict}" for name, verdict in report["same_tokens"].items()
                )
                lines.append(f"- {size} {family}: greedy tokens ours vs reference: {verdicts}")
            if bound := report.get("decode_b1_bound"):
                lines.append(
                    f"- {size} {family}: decoding at batch 1 reads {report['matmul_weight_bytes'] / 2**20:.1f} MiB of "
                    f"matmul weights per token, so the measured copy bandwidth bounds it to {bound['tok_s']:,.0f} "
                    f"tok/s; with the dynamic cache ours reaches {bound['ours']:.0%} of that, the reference "
                    f"{bound['reference']:.0%}"
                )
    results = [
        result
        for families in sizes.values()
        for report in families.values()
        for implementation in IMPLEMENTATIONS
        for result in report[implementation].values()
    ]
    retried = sum(result["tries"] > 1 for result in results)
    noisy = sum(result["noisy"] for result in results)
    lines.append(
        f"- noise: {len(results)} measurements, {retried} re-measured because the noise probe drifted or the repeats "
        f"spread by more than {settings.tolerance:.0%}, {noisy} still noisy after {settings.tries} tries (marked ~)"
    )
    return "\n".join(lines)


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()


def describe_machine(run: dict) -> str:
    machine = run["machine"]
    dirty = " (working tree has uncommitted changes)" if run["dirty"] else ""
    return (
        f"commit {run['commit']}{dirty}; {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch "
        f"threads; torch {machine['torch']}, transformers {machine['transformers']}"
    )


def header(run: dict) -> str:
    peak, copy = run["matmul_peak_gflops"], run["copy_gb_s"]
    return (
        f"{describe_machine(run)}; fp32 matmul peak {peak['used']:.0f} GFLOP/s (start {peak['start']:.0f}, end "
        f"{peak['end']:.0f}), memory copy {copy['used']:.1f} GB/s (start {copy['start']:.1f}, end {copy['end']:.1f}); "
        f"repeats {run['settings']['repeats']}, {run['settings']['new_tokens']} new tokens"
    )


# ----------------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small size only, 3 repeats, 16 new tokens (< 2 min)")
    parser.add_argument("--sizes", default=None, help=f"comma-separated, of {', '.join(SIZES)} (default: all)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma-separated presets to compare")
    parser.add_argument("--json", type=Path, help="also write the full results (every repeat) to this file")
    parser.add_argument("--repeats", type=int, help="timed calls per measurement (default 5, --quick 3)")
    parser.add_argument("--tries", type=int, help="measurements of a noisy case before it is kept and marked")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, usually the core count)")
    parser.add_argument("--profile", action="store_true", help="profile our llama preset's greedy decoding instead")
    parser.add_argument("--layouts", action="store_true", help="time batch-1 matmuls in both weight layouts instead")
    args = parser.parse_args(argv)
    args.sizes = (args.sizes or ("small" if args.quick else ",".join(SIZES))).split(",")
    args.families = args.families.split(",")
    for name, chosen, known in (("size", args.sizes, SIZES), ("family", args.families, FAMILIES)):
        if unknown := set(chosen) - set(known):
            parser.error(f"unknown {name} {', '.join(sorted(unknown))}: choose from {', '.join(known)}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    base = QUICK if args.quick else Settings()
    overrides = {"repeats": args.repeats, "tries": args.tries, "threads": args.threads}
    return Settings(**{**asdict(base), **{k: v for k, v in overrides.items() if v is not None}})


def profile(args: argparse.Namespace, settings: Settings, root: str):
    size = args.sizes[0]
    (checkpoints,) = fresh_process(
        "build_checkpoints", families=["llama"], shape=SIZES[size], root=f"{root}/{size}"
    ).values()
    print(f"## Profile: our llama preset ({size}), greedy generate at batch 1, prompt 8, sorted by self CPU time\n")
    print(
        fresh_process(
            "profile_decode",
            folder=checkpoints["ours"],
            family="llama",
            prompt=8,
            new_tokens=settings.new_tokens // 2,
            rows=25,
            threads=settings.threads,
        )
    )


def layouts(args: argparse.Namespace, settings: Settings):
    """Why batch-1 decoding is slow here: each weight streamed from memory in nn.Linear's layout and transposed."""
    print("## Weight layouts: one product per call, weights cycled through 256 MiB (cold), median us\n")
    print("| size | family | rows | weight | shape | [out, in] us (GB/s) | [in, out] us (GB/s) | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for family in [family for family in args.families if family != "bert"]:
            for rows in (1, 8):
                for weight in fresh_process(
                    "weight_layouts", family=family, shape=SIZES[size], rows=rows, threads=settings.threads
                ):
                    linear, transposed = weight["seconds"]["[out, in]"], weight["seconds"]["[in, out]"]
                    cells = [f"{t * 1e6:.0f} ({weight['bytes'] / t / 1e9:.0f})" for t in (linear, transposed)]
                    shape = "x".join(map(str, weight["shape"]))
                    print(
                        f"| {size} | {family} | {rows} | {weight['weight']} | {shape} | {cells[0]} | {cells[1]} "
                        f"| {linear / transposed:.2f}x |"
                    )


def benchmark(args: argparse.Namespace, settings: Settings, root: str, log) -> dict:
    """Every size and family, between two timings of the matmul peak; the whole run's record."""
    run = {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "machine": fresh_process("machine", threads=settings.threads),
        "settings": asdict(settings),
        "shapes": {size: SIZES[size] for size in args.sizes},
        "sizes": {},
    }
    # Timed at both ends of the run and the faster kept: a peak timed while the machine was busy inflates every MFU.
    peaks = [fresh_process("machine_peaks", threads=settings.threads)]
    log(
        f"{describe_machine(run)}; fp32 matmul peak {peaks[0]['matmul_flops'] / 1e9:.0f} GFLOP/s, memory copy "
        f"{peaks[0]['copy_bytes_s'] / 1e9:.1f} GB/s"
    )
    for size in args.sizes:
        checkpoints = fresh_process(
            "build_checkpoints", families=args.families, shape=SIZES[size], root=f"{root}/{size}"
        )
        log(f"{size}: saved the references and converted them to ours")
        run["sizes"][size] = {
            family: bench_family(family, size, checkpoints[family], settings, log) for family in args.families
        }
    peaks.append(fresh_process("machine_peaks", threads=settings.threads))
    for name, key in (("matmul_peak_gflops", "matmul_flops"), ("copy_gb_s", "copy_bytes_s")):
        start, end = (peak[key] / 1e9 for peak in peaks)
        run[name] = {"start": start, "end": end, "used": max(start, end)}
    for families in run["sizes"].values():
        for report in families.values():
            add_mfu_and_ratios(report, run["matmul_peak_gflops"]["used"] * 1e9)
            add_decode_bound(report, run["copy_gb_s"]["used"] * 1e9)
    return run


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    settings = settings_from(args)
    start = time.perf_counter()

    def log(message: str):
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="custom-transformer-bench-") as root:
        # Read by transformers when the fork server imports it: no Hub calls, and the checkpoints' code is
        # copied into this run's own folder, not the shared cache other runs may be writing.
        os.environ.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=f"{root}/modules", TOKENIZERS_PARALLELISM="false")
        # The fork server is a new interpreter started from the current directory: it finds cases.py only
        # through PYTHONPATH when the command is run from elsewhere (the repository root, as the README says).
        here = str(Path(__file__).resolve().parent)
        # glibc returns freed memory to the kernel by its own moving thresholds, so whether a fresh process faults
        # the same 8 MB activations back in on every step depended on its first allocations: the same forward
        # varied by 30% between processes (300k vs 480k page faults). Fixed thresholds (read by the fork server
        # at start) keep freed memory in the process, for ours and the reference alike.
        os.environ.update(MALLOC_MMAP_THRESHOLD_=str(32 * 2**20), MALLOC_TRIM_THRESHOLD_=str(4 * 2**30))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        multiprocessing.get_context("forkserver").set_forkserver_preload(["cases"])
        if args.profile:
            return profile(args, settings, root)
        if args.layouts:
            return layouts(args, settings)
        run = benchmark(args, settings, root, log)
    run["seconds"] = time.perf_counter() - start
    print(f"\n{header(run)}\n")
    for size, families in run["sizes"].items():
        print(table(size, families) + "\n")
    print(footnotes(run["sizes"], settings))
    print(f"\nfinished in {run['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(run, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
