"""Catching up: gateway Resume and GET /p2core/events with 1 to 1,000 missed events.

``python -m bench.resume`` starts the server and gives one actor a rotating
session and, per size (1,000, 100, 10, 1 missed events), nine sessions to resume
and nine to read ``/p2core/events``. Each group is identified just before the
last ``size`` rotations of the rotating session (each a Client Key Change event
of about 1 KiB), so that it misses exactly that many. The load generator then
times, one session at a time, Resume ``{s: -1}`` until the Resumed frame, and
``GET /p2core/events`` until its body. The baseline is a bare aiohttp server
answering the very same bytes (a WebSocket text frame, an HTTP body). Figures are
catch-ups per second (1 / median latency).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import aiohttp

from server.client import P2Client, SessionKey

from .common import (
    Result,
    baseline_server,
    bench_server,
    identify_all,
    issue_sessions,
    median,
    report,
    run_loadgen,
    server_cert_der,
)

__all__ = ["main"]

SAMPLES: Final = 9


async def _rotate(url: str, rotator: SessionKey, count: int) -> None:
    """``count`` ID-Cert rotations: one Client Key Change event each."""
    csr = rotator.csr()
    async with aiohttp.ClientSession() as http, asyncio.timeout(120):
        client = P2Client(url, http)
        for _ in range(count):
            reply = await client.request(
                "POST", "/p2core/session/idcert", json={"csr": csr}, token=rotator.token
            )
            rotator.token = reply.ok().data["token"]


def _prepare(
    url: str, server: Any, sizes: Sequence[int]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Identify the groups between rotations; return their tokens by size."""
    sizes = sorted(sizes, reverse=True)
    sessions = issue_sessions(
        server, server_cert_der(url), "resume", 1 + 2 * SAMPLES * len(sizes)
    )
    rotator, rest = sessions[0], sessions[1:]
    asyncio.run(identify_all(url, [rotator]))
    resume: dict[str, list[str]] = {}
    events: dict[str, list[str]] = {}
    for index, size in enumerate(sizes):
        group = rest[index * 2 * SAMPLES : (index + 1) * 2 * SAMPLES]
        asyncio.run(identify_all(url, group))
        resume[str(size)] = [s.token for s in group[:SAMPLES]]
        events[str(size)] = [s.token for s in group[SAMPLES:]]
        following = sizes[index + 1] if index + 1 < len(sizes) else 0
        asyncio.run(_rotate(url, rotator, size - following))
    return resume, events


def _result(name: str, size: str, timings: dict[str, Any]) -> Result:
    ours, base = median(timings["ours"]), median(timings["baseline"])
    return Result(
        f"{name}_{size}",
        1 / ours,
        1 / base,
        note=(
            f"catch-ups/s; median latency ours {ours * 1000:.2f} ms, "
            f"baseline {base * 1000:.2f} ms, {timings['bytes'] / 1024:.0f} KiB"
        ),
    )


def run(sizes: Sequence[int]) -> list[Result]:
    with (
        tempfile.TemporaryDirectory(prefix="p2core-bench-") as tmp,
        bench_server(Path(tmp)) as ours,
        baseline_server() as base,
    ):
        resume, events = _prepare(ours.url, ours, sizes)
        answer = run_loadgen(
            "resume",
            {
                "ours": {
                    "ws_url": ours.url.replace("http://", "ws://") + "/p2core/gateway",
                    "http_url": ours.url,
                },
                "baseline": {
                    "ws_url": base.url.replace("http://", "ws://") + "/_ws",
                    "http_url": base.url,
                },
                "resume": resume,
                "events": events,
            },
            timeout=120,
        )
    results = []
    for size, kinds in sorted(answer["sizes"].items(), key=lambda x: -int(x[0])):
        results.append(_result("resume_missed", size, kinds["resume"]))
        results.append(_result("events_route_missed", size, kinds["events"]))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100,10,1")
    parser.add_argument("--json", help="append results as JSON lines to this file")
    args = parser.parse_args(argv)
    report(run([int(x) for x in args.sizes.split(",")]), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
