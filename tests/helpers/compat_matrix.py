"""The checkpoint contract under every transformers release: the newest patch of each 5.x minor, from the index.

    make compat                                          # every release from the floor to the newest
    .venv/bin/python tests/helpers/compat_matrix.py --versions 5.3.0,5.8.1 --json matrix.json

Saves the contract checkpoints once (with the package as it is in this checkout), then runs
`checkpoint_contract.py` (beside this file) under each release in turn, installing its release site on first
use (about 220 MB each, under ~/.cache/custom_transformer/transformers-sites, or CT_SITE_CACHE). Prints one
row per release, what each release was installed without (a hard requirement the index lacks, switched off as the
release allows), and exits with 1 if any release breaks the contract or could not be run at all (skipped, with
the reason: not verified is not a pass).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # run by path: make tests/ importable, so `helpers` is this folder's package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers.utils.logging import disable_progress_bar

from custom_transformer.transformers_compat import MIN_TRANSFORMERS_VERSION
from helpers.contract_checkpoints import GENERATION_MODES, contract_failures, run_contract, save_contract_checkpoints
from helpers.transformers_releases import (
    NotInstallable,
    describe_left_out,
    latest_patch_of_each_minor,
    python_env,
    release_site,
)

COLUMNS = (
    "release",
    "loads ok",
    "max logits diff",
    "none==expected",
    "dynamic==expected",
    "static==expected",
    "translation pipeline",
    "deprecation signals",
    "first error (short)",
)


def run_release(version: str, cases: Path, workdir: Path) -> dict:
    """Install (or reuse) the release site and run the contract under it; errors become the row's failure."""
    started = time.monotonic()
    try:
        site = release_site(version)
        results = run_contract(cases, workdir / version, python_env(site, hf_home=workdir / version / "hf-home"))
    except NotInstallable as reason:
        return {"version": version, "error": f"skipped: {reason}", "seconds": time.monotonic() - started}
    except Exception as error:
        return {"version": version, "error": f"{type(error).__name__}: {error}", "seconds": time.monotonic() - started}
    failures = contract_failures(results, expect_no_deprecations=False)
    if results["transformers_version"] != version:
        failures.insert(0, f"ran transformers {results['transformers_version']}, not {version}")
    return {
        "version": version,
        "results": results,
        "failures": failures,
        "left_out": describe_left_out(site),
        "seconds": time.monotonic() - started,
    }


def row(run: dict) -> list[str]:
    if "error" in run:
        return [run["version"], *["-"] * (len(COLUMNS) - 2), short(run["error"])]
    results = run["results"]
    loads = results["loads"].values()
    diffs = [entry["max_abs_diff"] for entry in loads if "max_abs_diff" in entry]
    generations = results["generations"].values()
    same = [f"{sum(g[m]['equals_expected'] for g in generations)}/{len(generations)}" for m in GENERATION_MODES]
    pipelines = results.get("pipelines", {}).values()
    return [
        run["version"],
        f"{sum('error' not in entry for entry in loads)}/{len(loads)}",
        f"{max(diffs):.1e}" if diffs else "-",
        *same,
        f"{sum(p['equals_expected'] for p in pipelines)}/{len(pipelines)}",
        str(len(results["deprecations"])),
        short(run["failures"][0]) if run["failures"] else "",
    ]


def short(text: str, width: int = 110) -> str:
    """One line for a table cell: whitespace collapsed, absolute paths cut to their file name."""
    text = re.sub(r"(?<![\w.])/(?:[^\s'\"/]+/)+([^\s'\"/]+)", r".../\1", " ".join(text.split()))
    text = text.replace("|", "/")
    return text if len(text) <= width else text[: width - 3] + "..."


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [list(COLUMNS), *rows]) for i in range(len(COLUMNS))]
    line = lambda cells: "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(COLUMNS), line(["-" * width for width in widths]), *map(line, rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", help="comma-separated releases (default: the newest patch of every 5.x minor)")
    parser.add_argument("--json", type=Path, help="also write every release's full results here")
    args = parser.parse_args(argv)
    if args.versions:
        versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    else:
        versions = latest_patch_of_each_minor(major=5, floor=MIN_TRANSFORMERS_VERSION)
    print(f"transformers releases: {', '.join(versions)}", flush=True)

    disable_progress_bar()  # one line per release, not a bar per saved checkpoint
    runs = []
    with tempfile.TemporaryDirectory(prefix="ct-compat-") as tmp:
        cases = save_contract_checkpoints(Path(tmp) / "checkpoints")
        for version in versions:  # one at a time: each run loads and generates on every core
            runs.append(run_release(version, cases, Path(tmp) / "runs"))
            verdict = "ok" if not runs[-1].get("error") and not runs[-1]["failures"] else "FAILS"
            verdict = "SKIPPED" if runs[-1].get("error", "").startswith("skipped:") else verdict
            print(f"  {version}: {verdict} ({runs[-1]['seconds']:.0f} s)", flush=True)

    print(table([row(run) for run in runs]))
    for run in runs:
        if run.get("left_out"):
            print(f"{run['version']}: {run['left_out']}")
        for failure in [run["error"]] if "error" in run else run["failures"]:
            print(f"{run['version']}: {failure}")
        for signal in run.get("results", {}).get("deprecations", []):
            source = "/".join(signal["source"].rsplit("/", 2)[-2:])
            print(f"{run['version']}: deprecation {signal['category']} at {source}: {short(signal['message'], 160)}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 1 if any("error" in run or run["failures"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
