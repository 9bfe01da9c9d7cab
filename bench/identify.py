"""POST /p2core/session/identify against the cost of its cryptography alone.

``python -m bench.identify`` starts servers A (home) and B (foreign, caching A's
server ID-Cert), gives 1,000 sessions of one actor of A an ID-Cert and identifies
each on B once (which creates B's sessions and fills its cache). The load
generator then fetches and signs fresh challenges and times only the identify
requests, at 1, 10, 100 and 1,000 concurrent clients, each request naming
another session. The baseline is the two Ed25519 verifications every identify
needs, the challenge signature (key read from the ID-Cert's 32 bytes) and the
ID-Cert's signature (server key preloaded), run on the server CPU.
Goal: ours at least 0.5 of that ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from server.certs import load_id_cert, load_server_cert
from server.client import P2Client, SessionKey
from server.demo import PASSWORD, two_servers

from .common import (
    BENCH_ENV,
    CLIENT_CPU,
    SERVER_CPU,
    Result,
    identify_all,
    issue_sessions,
    median,
    pin,
    report,
    run_loadgen,
    server_cert_der,
)

__all__ = ["crypto_ceiling", "main"]

GOAL: Final = 0.5
SESSIONS: Final = 1000
ACTOR: Final = "bench"


def crypto_ceiling(sessions: Sequence[SessionKey], issuer_der: bytes) -> float:
    """Identifies per second if each cost only its two Ed25519 verifications."""
    issuer = Ed25519PublicKey.from_public_bytes(load_server_cert(issuer_der).public_key)
    cases = []
    for session in sessions[:100]:
        cert = load_id_cert(session.id_cert)
        challenge = os.urandom(32).hex().encode()
        cases.append((cert.public_key, session.key.sign(challenge), challenge, cert))
    previous = os.sched_getaffinity(0)
    if len(previous) >= 2:
        os.sched_setaffinity(0, {SERVER_CPU})  # this thread only: the server's CPU
    try:
        done = 0
        started = time.perf_counter()
        deadline = started + 1.0
        while time.perf_counter() < deadline:
            for public_key, signature, challenge, cert in cases:
                Ed25519PublicKey.from_public_bytes(public_key).verify(
                    signature, challenge
                )
                issuer.verify(cert.signature, cert.tbs)
            done += len(cases)
        return done / (time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, previous)


def _raw_key(session: SessionKey) -> str:
    return session.key.private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    ).hex()


def run(levels: Sequence[int], requests: int, seconds: float) -> list[Result]:
    env = {**BENCH_ENV, "P2CORE_FEDERATION_CACHE_TTL_S": "3600"}
    with (
        tempfile.TemporaryDirectory(prefix="p2core-bench-") as tmp,
        two_servers(Path(tmp), env) as (a, b),
    ):
        asyncio.run(a.wait_ready())
        asyncio.run(b.wait_ready())
        assert a.process is not None and b.process is not None
        pin(b.process.pid, SERVER_CPU)
        pin(a.process.pid, CLIENT_CPU)  # A is asked once, then B uses its cache
        asyncio.run(_register(a.url))
        issuer_der = server_cert_der(a.url)
        sessions = issue_sessions(a, issuer_der, ACTOR, SESSIONS)
        asyncio.run(identify_all(b.url, sessions))
        ceilings = [crypto_ceiling(sessions, issuer_der)]
        spec: dict[str, Any] = {
            "url": b.url,
            "sessions": [
                {
                    "key": _raw_key(s),
                    "cert": base64.b64encode(s.id_cert).decode(),
                }
                for s in sessions
            ],
            "levels": list(levels),
            "requests": requests,
            "seconds": seconds,
        }
        answer = run_loadgen("identify", spec, timeout=60 + 30 * len(levels))
        ceilings.append(crypto_ceiling(sessions, issuer_der))
    ceiling = median(ceilings)
    results = []
    for level in answer["levels"]:
        if level["errors"]:
            raise RuntimeError(f"{level['errors']} identify requests failed")
        results.append(
            Result(
                f"identify_c{level['concurrency']}",
                level["rate"],
                ceiling,
                goal=GOAL,
                note=(
                    f"{level['ok']} requests, {level['concurrency']} clients, "
                    f"{SESSIONS} sessions; baseline = 2 Ed25519 verifies"
                ),
            )
        )
    return results


async def _register(url: str) -> None:
    async with P2Client(url) as client:
        await client.register(ACTOR, PASSWORD)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1,10,100,1000")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", help="append results as JSON lines to this file")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]
    report(run(levels, args.requests, args.seconds), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
