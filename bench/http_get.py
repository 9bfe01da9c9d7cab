"""GET /p2core/key/server and GET /p2core/challenge against a bare aiohttp handler.

``python -m bench.http_get`` starts the server and the baseline (a bare aiohttp
handler answering the same bytes) on the server CPU and loads each with ``wrk``
(or, without it, the Python load generator) on the client CPU, at 1, 10, 100
and 1,000 connections, alternating the two three times per level and keeping
the median pair. Goal: ours at least 0.7 of the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import aiohttp

from .common import (
    CLIENT_CPU,
    Result,
    baseline_server,
    bench_server,
    report,
    run_loadgen,
)

__all__ = ["main"]

PATHS: Final = {"key_server": "/p2core/key/server", "challenge": "/p2core/challenge"}
GOAL: Final = 0.7
ROUNDS: Final = 3
_RATE: Final = re.compile(r"Requests/sec:\s+([0-9.]+)")
_NON_2XX: Final = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def load(url: str, connections: int, seconds: float) -> float:
    """Requests per second answered with 2xx at ``url``.

    Raises:
        RuntimeError: the load generator failed or saw error answers.
    """
    wrk = shutil.which("wrk")
    if wrk is None:
        spec = {"url": url, "connections": connections, "seconds": seconds}
        result = run_loadgen("get", spec, timeout=seconds + 60)
        if result["errors"]:
            raise RuntimeError(f"{result['errors']} failed requests to {url}")
        return float(result["rate"])
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        url,
    ]
    if shutil.which("taskset"):
        command = ["taskset", "-c", str(CLIENT_CPU), *command]
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    rate = _RATE.search(output)
    failed = _NON_2XX.search(output)
    if rate is None or (failed and int(failed.group(1))):
        raise RuntimeError(f"wrk failed on {url}: {output}")
    return float(rate.group(1))


def generator_name() -> str:
    return "wrk -t1" if shutil.which("wrk") else "Python aiohttp load generator"


async def _body(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")
        return await response.read()


async def _store(base_url: str, path: str, body: bytes) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/_set", params={"path": path}, data=body) as response,
    ):
        if response.status != 204:
            raise RuntimeError("baseline refused the bytes")


def _compare(
    name: str, base_url: str, ours_url: str, connections: int, seconds: float
) -> Result:
    """Alternate baseline and ours ``ROUNDS`` times; keep the median pair."""
    pairs = []
    for _ in range(ROUNDS):
        baseline = load(base_url, connections, seconds)
        pairs.append((load(ours_url, connections, seconds) / baseline, baseline))
    ratio, baseline = sorted(pairs)[len(pairs) // 2]
    return Result(
        f"get_{name}_c{connections}",
        ratio * baseline,
        baseline,
        goal=GOAL,
        note=f"{generator_name()} -c{connections}, median of {ROUNDS} pairs",
    )


def run(levels: Sequence[int], seconds: float) -> list[Result]:
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="p2core-bench-") as tmp,
        bench_server(Path(tmp)) as ours,
        baseline_server() as base,
    ):
        for path in PATHS.values():
            asyncio.run(_store(base.url, path, asyncio.run(_body(ours.url + path))))
            load(base.url + path, 50, 1)  # warm both up
            load(ours.url + path, 50, 1)
        for name, path in PATHS.items():
            base_url, ours_url = base.url + path, ours.url + path
            for connections in levels:
                results.append(_compare(name, base_url, ours_url, connections, seconds))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--levels", default="1,10,100,1000")
    parser.add_argument("--json", help="append results as JSON lines to this file")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    print(f"load generator: {generator_name()}", flush=True)
    report(run(levels, args.seconds), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
