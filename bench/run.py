"""Run every benchmark, one process each, and print all ratios and a results table.

``python -m bench.run`` (from the project root) takes about two minutes on a
2-core machine; ``--only identify,outbox`` runs a subset. Every benchmark runs
under a time limit; one that fails or overruns is reported and the rest go on.
The exit status is 1 if any benchmark failed, else 0 (missed goals are reported,
not failures).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Final

import orjson

from .common import ROOT, Result

__all__ = ["main"]

# name: (module, time limit in seconds)
BENCHMARKS: Final = {
    "http_get": ("bench.http_get", 150),
    "identify": ("bench.identify", 150),
    "fanout": ("bench.fanout", 240),
    "outbox": ("bench.outbox", 120),
    "resume": ("bench.resume", 120),
}


def _versions() -> str:
    names = ("aiohttp", "aiosqlite", "cryptography", "orjson")
    packages = ", ".join(f"{n} {metadata.version(n)}" for n in names)
    return f"Python {platform.python_version()}, {packages}"


def _load() -> str:
    """The 1-minute load average: other work on the machine skews the figures."""
    return f"{os.getloadavg()[0]:.2f}"


def _run_one(module: str, limit: float, json_path: Path) -> str | None:
    """Run one benchmark module; return an error text, or None if it worked."""
    try:
        completed = subprocess.run(
            [sys.executable, "-m", module, "--json", str(json_path)],
            cwd=ROOT,
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        return f"did not finish within {limit:.0f} s"
    if completed.returncode != 0:
        return f"exited with status {completed.returncode}"
    return None


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| benchmark | ours | baseline | ratio | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        sep = "" if r.unit == "/s" else " "
        lines.append(
            f"| {r.name} | {_fmt(r.ours)}{sep}{r.unit} | {_fmt(r.baseline)}{sep}"
            f"{r.unit} | {r.ratio:.2f} | {r.goal_text()} |"
        )
    return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS)
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    loadgen = "wrk" if shutil.which("wrk") else "the Python load generator"
    print(f"# {_versions()}; HTTP load by {loadgen}", flush=True)
    print(f"# {os.cpu_count()} CPUs, load average at start {_load()}", flush=True)
    failures = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="p2core-bench-") as tmp:
        json_path = Path(tmp) / "results.jsonl"
        json_path.touch()
        for name in names:
            module, limit = BENCHMARKS[name]
            print(f"## {name}", flush=True)
            error = _run_one(module, limit, json_path)
            if error is not None:
                print(f"{name}: FAILED, {error}", flush=True)
                failures.append(name)
        results = [
            Result(**orjson.loads(line))
            for line in json_path.read_bytes().splitlines()
            if line
        ]
    elapsed = time.monotonic() - started
    print(f"\n## Summary ({elapsed:.0f} s, load average at end {_load()})\n")
    print(table(results))
    missed = [r.name for r in results if r.met is False]
    print(f"\ngoals missed: {', '.join(missed) if missed else 'none'}")
    if failures:
        print(f"benchmarks failed: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
