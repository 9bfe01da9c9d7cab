"""Gateway fan-out: events delivered per second to N connected clients, and memory.

``python -m bench.fanout`` starts the server and gives one actor per level N
(1,000, 100, 10, 1) N listening sessions plus two rotating ones. The load
generator connects N gateway clients (Hello, Identify, Ready), then the rotating
sessions replace their ID-Certs back to back (``POST /p2core/session/idcert``):
each rotation is one Client Key Change event, stored in the outbox of every other
session of the actor and sent to its clients. The figure is client-messages
delivered per second, from the first rotation until every client has every
event. The baseline is a bare aiohttp WebSocket server sending a frame of the
same size to the same number of clients, one ``send_frame`` per client.

Memory per idle connection is the server's RSS growth from connecting the 1,000
clients (authenticated, idle) divided by 1,000, against the same for bare
WebSockets. Goals: at least 0.5 of the baseline rate at 1,000 clients, and
under 64 KiB per idle connection.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from server.certs import der_to_pem
from server.client import SessionKey

from .common import (
    Loadgen,
    Result,
    baseline_server,
    bench_server,
    identify_all,
    issue_sessions,
    report,
    rss_kib,
    server_cert_der,
)

__all__ = ["main"]

RATE_GOAL: Final = 0.5
MEMORY_LIMIT_KIB: Final = 64.0
ROTATORS: Final = 2
# Events per level: enough for a few seconds of sending, bounded in count.
EVENTS: Final = {1000: 100, 100: 300, 10: 1000, 1: 1000}
DEADLINE: Final = 40.0
# The baseline sends at least this many messages, so that it runs long enough
# to be timed at every level.
BASELINE_MESSAGES: Final = 200_000


def event_frame(session: SessionKey) -> str:
    """A Client Key Change event frame as the server sends it for ``session``."""
    d = orjson.dumps(
        {
            "fid": session.fid,
            "session_id": session.session_id,
            "cert": der_to_pem(session.id_cert),
            "oldInvalidSince": int(time.time()),
        }
    )
    return f'{{"n":"core","op":13,"d":{d.decode()},"s":100}}'


def _measure(
    spec: dict[str, Any], pid: int, settle: float
) -> tuple[dict[str, Any], float]:
    """Run one fan-out; return its result and the RSS growth per client (KiB)."""
    before = rss_kib(pid)
    loadgen = Loadgen("fanout", spec)
    try:
        connected = loadgen.read(timeout=90)["connected"]
        time.sleep(settle)
        per_client = (rss_kib(pid) - before) / connected
        loadgen.send({"go": True})
        result = loadgen.read(timeout=DEADLINE + 30)
    finally:
        loadgen.close()
    if result["closed"] or result["complete"] != result["clients"]:
        raise RuntimeError(f"fan-out lost clients or events: {result}")
    return result, per_client


def _actor_sessions(
    url: str, server: Any, issuer: bytes, clients: int
) -> tuple[list[SessionKey], list[SessionKey]]:
    sessions = issue_sessions(server, issuer, f"fan{clients}", clients + ROTATORS)
    asyncio.run(identify_all(url, sessions))
    return sessions[:ROTATORS], sessions[ROTATORS:]


def run(levels: Sequence[int]) -> list[Result]:
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="p2core-bench-") as tmp,
        bench_server(Path(tmp)) as ours,
        baseline_server() as base,
    ):
        assert ours.process is not None
        ws_base = base.url.replace("http://", "ws://") + "/_ws"
        ws_ours = ours.url.replace("http://", "ws://") + "/p2core/gateway"
        issuer = server_cert_der(ours.url)
        for clients in sorted(levels, reverse=True):
            events = EVENTS.get(clients, 100)
            rotators, listeners = _actor_sessions(ours.url, ours, issuer, clients)
            settle = 1.0 if clients >= 100 else 0.2
            common = {"clients": clients, "events": events, "deadline": DEADLINE}
            base_events = max(events, BASELINE_MESSAGES // clients)
            base_result, base_mem = _measure(
                {
                    **common,
                    "events": base_events,
                    "kind": "bare",
                    "ws_url": ws_base,
                    "http_url": base.url,
                    "frame": event_frame(rotators[0]),
                },
                base.pid,
                settle,
            )
            ours_result, ours_mem = _measure(
                {
                    **common,
                    "kind": "p2core",
                    "ws_url": ws_ours,
                    "http_url": ours.url,
                    "tokens": [s.token for s in listeners],
                    "rotators": [{"token": s.token, "csr": s.csr()} for s in rotators],
                },
                ours.process.pid,
                settle,
            )
            results.append(
                Result(
                    f"fanout_n{clients}",
                    ours_result["rate"],
                    base_result["rate"],
                    goal=RATE_GOAL if clients >= 1000 else None,
                    note=(
                        f"client-msgs/s, {events} events to {clients} clients; "
                        f"ours {events / ours_result['elapsed']:,.0f} events/s"
                    ),
                )
            )
            if clients >= 1000:
                results.append(
                    Result(
                        f"gateway_memory_per_idle_connection_n{clients}",
                        ours_mem,
                        base_mem,
                        unit="KiB",
                        limit=MEMORY_LIMIT_KIB,
                        note="server RSS growth / clients, authenticated and idle",
                    )
                )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1000,100,10,1")
    parser.add_argument("--json", help="append results as JSON lines to this file")
    args = parser.parse_args(argv)
    report(run([int(x) for x in args.levels.split(",")]), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
