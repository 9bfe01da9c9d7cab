"""What every benchmark shares: results, CPU pinning, servers and load generators.

Each benchmark runs the server under test and its baseline one after the other on
the same CPU, with the load generator in a separate process on the other CPU, so
that the two figures of a ratio meet the same conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from server.certs import load_csr, load_server_cert
from server.client import P2Client, SessionKey, build_csr
from server.demo import ServerProcess, free_port
from server.identity import KEY_FILE
from server.issuing import issue_actor_cert, new_serial_number

__all__ = [
    "BENCH_ENV",
    "CLIENT_CPU",
    "ROOT",
    "SERVER_CPU",
    "Loadgen",
    "Result",
    "baseline_server",
    "bench_server",
    "identify_all",
    "issue_sessions",
    "median",
    "pin",
    "report",
    "rss_kib",
    "run_loadgen",
    "server_cert_der",
]

ROOT: Final = Path(__file__).resolve().parents[1]
SERVER_CPU: Final = 0
CLIENT_CPU: Final = 1
# Benchmarks need the rate limits out of the way and no heartbeat traffic.
BENCH_ENV: Final = {
    "P2CORE_LIMITS_RATE_PER_MINUTE": "1000000000",
    "P2CORE_GATEWAY_RATE_PER_MINUTE": "1000000",
    "P2CORE_GATEWAY_HEARTBEAT_INTERVAL_MS": "3600000",
}


@dataclass(slots=True)
class Result:
    """One figure of ours against its baseline.

    ``unit`` is ``/s`` for rates (higher is better); any other unit is a cost
    (lower is better), whose ratio is baseline over ours so that a ratio above
    the goal is always good.
    """

    name: str
    ours: float
    baseline: float
    unit: str = "/s"
    goal: float | None = None
    limit: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.unit == "/s":
            return self.ours / self.baseline if self.baseline else 0.0
        return self.baseline / self.ours if self.ours else 0.0

    @property
    def met(self) -> bool | None:
        """Whether the goal (a ratio, or a limit on ours) is met; None if none."""
        checks = []
        if self.goal is not None:
            checks.append(self.ratio >= self.goal)
        if self.limit is not None:
            checks.append(self.ours < self.limit)
        return all(checks) if checks else None

    def goal_text(self) -> str:
        parts = []
        if self.goal is not None:
            parts.append(f"ratio >= {self.goal:g}")
        if self.limit is not None:
            parts.append(f"ours < {self.limit:g} {self.unit}")
        if not parts:
            return "none"
        verdict = "met" if self.met else "MISSED"
        return f"{' and '.join(parts)}: {verdict}"

    def line(self) -> str:
        sep = "" if self.unit == "/s" else " "
        text = (
            f"{self.name}: ours {_num(self.ours)}{sep}{self.unit}, "
            f"baseline {_num(self.baseline)}{sep}{self.unit}, "
            f"ratio {self.ratio:.2f} (goal {self.goal_text()})"
        )
        return f"{text} [{self.note}]" if self.note else text


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def report(results: Sequence[Result], json_path: str | None) -> None:
    """Print each result; append them as JSON lines to ``json_path`` if given."""
    for result in results:
        print(result.line(), flush=True)
    if json_path:
        with open(json_path, "ab") as out:
            for result in results:
                out.write(orjson.dumps(asdict(result)) + b"\n")


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


# -- processes and CPUs


def _can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of process ``pid`` to one CPU (no-op on a 1-CPU machine)."""
    if not _can_pin():
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), {cpu})


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _pinned_to(cpu: int) -> Any:
    if not _can_pin():
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def bench_server(
    root: Path, domain: str = "bench.example", env: Mapping[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A ``p2core-server`` process on 127.0.0.1, pinned to the server CPU."""
    server = ServerProcess(root, domain, free_port(), {}, {**BENCH_ENV, **(env or {})})
    server.start()
    try:
        asyncio.run(server.wait_ready())
        assert server.process is not None
        pin(server.process.pid, SERVER_CPU)
        yield server
    finally:
        server.stop()


@dataclass(slots=True)
class BaselineServer:
    url: str
    pid: int


@contextlib.contextmanager
def baseline_server() -> Iterator[BaselineServer]:
    """The bare aiohttp server of ``bench.baseline_server``, pinned like ours."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline_server", "--port", str(port)],
        cwd=ROOT,
        preexec_fn=_pinned_to(SERVER_CPU),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_http(f"{url}/_ready", process))
        yield BaselineServer(url, process.pid)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _wait_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"process for {url} exited")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in time")


class Loadgen:
    """A ``bench.loadgen`` process on the client CPU, spoken to by JSON lines."""

    def __init__(self, mode: str, spec: Mapping[str, Any]) -> None:
        self._spec = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix="p2core-bench-", suffix=".json"
        )
        self._spec.write(orjson.dumps(spec))
        self._spec.flush()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", mode, self._spec.name],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            preexec_fn=_pinned_to(CLIENT_CPU),
        )

    def read(self, timeout: float) -> dict[str, Any]:
        """The next JSON line the process prints.

        Raises:
            RuntimeError: it printed nothing in time, or exited.
        """
        stdout = self.process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else b""
        if not line:
            self.close()
            raise RuntimeError("load generator gave no answer in time")
        value: dict[str, Any] = orjson.loads(line)
        if "error" in value:
            raise RuntimeError(f"load generator failed: {value['error']}")
        return value

    def send(self, message: Mapping[str, Any]) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(orjson.dumps(message) + b"\n")
        stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._spec.close()


def run_loadgen(mode: str, spec: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """Run one load generator to its end and return its result line."""
    loadgen = Loadgen(mode, spec)
    try:
        return loadgen.read(timeout)
    finally:
        loadgen.close()


# -- sessions made quickly


def issue_sessions(
    server: ServerProcess, server_cert_der: bytes, local_name: str, count: int
) -> list[SessionKey]:
    """ID-Certs for ``count`` sessions of one actor, signed with the server's key.

    This is what ``/p2core/session/trust`` would issue, without its 50 ms scrypt
    password check per session, so that a thousand sessions take a second.
    """
    key = load_pem_private_key((server.dir / "data" / KEY_FILE).read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    issuer = load_server_cert(server_cert_der)
    now = int(time.time())
    start = max(now - 60, issuer.not_valid_before)
    sessions = []
    for number in range(count):
        session = SessionKey(local_name, server.domain, f"s{number}")
        csr = load_csr(
            build_csr(session.key, local_name, server.domain, session.session_id),
            domain=server.domain,
        )
        session.id_cert = issue_actor_cert(
            csr,
            issuer_key=key,
            issuer_cert=issuer,
            serial_number=new_serial_number(),
            not_valid_before=start,
            not_valid_after=now + 7 * 86400,
        )
        sessions.append(session)
    return sessions


async def identify_all(
    url: str, sessions: Sequence[SessionKey], concurrency: int = 16
) -> None:
    """Identify every session on the server at ``url``; store each token."""
    queue = list(reversed(sessions))

    async def worker(client: P2Client) -> None:
        while queue:
            session = queue.pop()
            session.token = await client.identify(session)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        client = P2Client(url, http)
        async with asyncio.timeout(120):
            await asyncio.gather(*(worker(client) for _ in range(concurrency)))


def server_cert_der(url: str) -> bytes:
    """The server ID-Cert in force at ``url``."""

    async def fetch() -> bytes:
        async with P2Client(url) as client:
            return await client.server_cert()

    return asyncio.run(fetch())
