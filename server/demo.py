"""Federation demo: two servers on 127.0.0.1, an actor of one identifies on the other.

Run ``python -m server.demo``. It starts two ``p2core-server`` processes with their
own configs and data directories, each naming the other in ``federation.peers``,
then registers ``alice`` on server A, has A issue her an ID-Cert from a CSR, and
authenticates her on server B by challenge. B checks her ID-Cert against A's
server ID-Cert, fetched over HTTP. Exit status 0 only when every step worked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp

from .certs import load_id_cert
from .client import P2Client, SessionKey, identify_body

__all__ = ["ServerProcess", "free_port", "main", "run_demo", "two_servers"]

PASSWORD = "demo password 1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One ``python -m server`` child process with its own config and data."""

    def __init__(
        self,
        root: Path,
        domain: str,
        port: int,
        peers: dict[str, str],
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env`` adds ``P2CORE_<SECTION>_<KEY>`` settings, which win over the file."""
        self.domain = domain
        self.env = dict(env or {})
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.dir = root / domain
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "config.toml"
        peer_lines = "\n".join(f'"{d}" = "{u}"' for d, u in peers.items())
        self.config_path.write_text(
            "[server]\n"
            f'domain = "{domain}"\n'
            f'public_url = "{self.url}"\n'
            'host = "127.0.0.1"\n'
            f"port = {port}\n"
            f'data_dir = "{self.dir / "data"}"\n'
            "[auth]\n"
            f'admins = ["alice@{domain}"]\n'
            "[limits]\n"
            "rate_per_minute = 100000\n"
            "[federation]\n"
            "cache_ttl_s = 0\n"
            "timeout_s = 5\n"
            "[federation.peers]\n"
            f"{peer_lines}\n",
            encoding="utf-8",
        )
        self.log_path = self.dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            env={**os.environ, **self.env},
        )
        log.close()

    async def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll ``/healthz`` until it answers 200.

        Raises:
            RuntimeError: the process exited or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(
                        f"server {self.domain} exited: {self.log_path.read_text()}"
                    )
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server {self.domain} did not start in time")

    def stop(self) -> int:
        """SIGTERM the process by PID and return its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return int(code)


@contextlib.contextmanager
def two_servers(
    root: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Start servers ``a.example`` and ``b.example`` that federate with each other.

    ``env`` adds the same ``P2CORE_<SECTION>_<KEY>`` settings to both.
    """
    port_a, port_b = free_port(), free_port()
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    a = ServerProcess(root, "a.example", port_a, {"b.example": url_b}, env)
    b = ServerProcess(root, "b.example", port_b, {"a.example": url_a}, env)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def _step(number: int, text: str) -> None:
    print(f"[{number}] {text}", flush=True)


async def run_demo(a: ServerProcess, b: ServerProcess) -> None:
    """The demo's steps; raises on the first one that fails."""
    await a.wait_ready()
    await b.wait_ready()
    _step(1, f"server A ({a.domain}) at {a.url} and server B ({b.domain}) at {b.url}")
    async with P2Client(a.url) as home, P2Client(b.url) as foreign:
        fid = await home.register("alice", PASSWORD)
        _step(2, f"registered {fid} on A")
        session = await home.trust(SessionKey("alice", a.domain, "demo1"), PASSWORD)
        cert = load_id_cert(session.id_cert)
        _step(3, f"A issued an ID-Cert from alice's CSR: serial {cert.serial_number}")
        token = await foreign.identify(session)
        _step(4, "B verified alice's challenge signature and ID-Cert; token issued")
        reply = await foreign.request("GET", "/p2core/events", token=token)
        if reply.status != 409:
            raise RuntimeError(f"B did not accept the token: status {reply.status}")
        _step(5, "B accepts alice's token on an authenticated route")
        forged = SessionKey("alice", a.domain, "demo2")
        forged.id_cert = session.id_cert
        reply = await foreign.request(
            "POST",
            "/p2core/session/identify",
            json=identify_body(forged.key, await foreign.challenge(), forged.id_cert),
        )
        if reply.status != 401:
            raise RuntimeError(
                f"B accepted a signature by the wrong key: {reply.status}"
            )
        _step(6, "B refused a challenge signed by a key that is not in the ID-Cert")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="p2core-demo-") as tmp:
        try:
            with two_servers(Path(tmp)) as (a, b):
                asyncio.run(run_demo(a, b))
                codes = (a.stop(), b.stop())
            if codes != (0, 0):
                print(f"servers exited with {codes}", file=sys.stderr)
                return 1
        except Exception as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
    print("demo passed: alice of A authenticated on B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
