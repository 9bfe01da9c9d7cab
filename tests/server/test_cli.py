"""The ``p2core-server`` command as an operator runs it: start, refuse, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.demo import free_port


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def start_cli(cwd: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "server"],
        cwd=cwd,
        env={**os.environ, "P2CORE_SERVER_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_for(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer")


def test_cli_refuses_bad_config_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nport = 'eighty'\n")
    result = run_cli(tmp_path, "--config", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "server.port must be of type int" in lines[0]


def test_cli_refuses_missing_config_file_with_exit_2(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr


def test_cli_refuses_corrupt_database_with_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "p2core.sqlite3").write_bytes(b"garbage" * 1000)
    result = run_cli(tmp_path, env={"P2CORE_SERVER_PORT": str(free_port())})
    assert result.returncode == 2
    assert "cannot start" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("damage", ["delete", "garbage"])
async def test_cli_refuses_missing_or_bad_key_with_exit_2(
    tmp_path: Path, damage: str
) -> None:
    port = free_port()
    process = start_cli(tmp_path, port)
    try:
        await wait_for(f"http://127.0.0.1:{port}/healthz")
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    key = tmp_path / "data" / "server_key.pem"
    if damage == "delete":
        key.unlink()
    else:
        key.write_text("not a key")
    result = run_cli(tmp_path, env={"P2CORE_SERVER_PORT": str(free_port())})
    assert result.returncode == 2
    assert "server key" in result.stderr


async def test_cli_starts_with_defaults_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    process = start_cli(tmp_path, port)
    try:
        await wait_for(f"http://127.0.0.1:{port}/healthz")
        async with connect(f"ws://127.0.0.1:{port}/p2core/gateway") as ws:
            hello = await ws.recv()
            assert '"op":1' in str(hello)
            os.kill(process.pid, signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "data" / "p2core.sqlite3").exists()
    assert (tmp_path / "data" / "server_key.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "p2core.sqlite3").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
