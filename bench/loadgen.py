"""The Python load generator, run as its own process on the client CPU.

``python -m bench.loadgen MODE SPEC.json`` reads its job from SPEC.json and prints
one JSON line per result (``{"error": ...}`` on failure). Modes:

- ``get``: HTTP GETs on ``connections`` keep-alive connections for ``seconds``
  (used when ``wrk`` is not installed).
- ``identify``: per concurrency level, fetches and signs challenges first, then
  times only the ``POST /p2core/session/identify`` requests.
- ``fanout``: connects WebSocket clients, prints ``{"connected": N}``, waits for
  a line on stdin, triggers ``events`` events and times until every client has
  them all.
- ``resume``: times gateway Resume and ``GET /p2core/events`` one session at a
  time, then the baseline server answering the same bytes.

Every loop is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = ["main"]

_CONNECT_TIMEOUT: Final = 60.0


def _say(value: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(value) + b"\n")
    sys.stdout.buffer.flush()


async def _stdin_line() -> Any:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return orjson.loads(line) if line.strip() else None


def _frame(op: int, d: Any) -> str:
    return orjson.dumps({"n": "core", "op": op, "d": d}).decode()


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)


# -- get


async def _get(spec: dict[str, Any]) -> dict[str, Any]:
    url, connections, seconds = spec["url"], spec["connections"], spec["seconds"]
    counts = {"ok": 0, "errors": 0}
    async with _session(connections) as http:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    async with http.get(url) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                counts["ok" if ok else "errors"] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - started
    return {**counts, "elapsed": elapsed, "rate": counts["ok"] / elapsed}


# -- identify


async def _prepare_bodies(
    http: aiohttp.ClientSession,
    url: str,
    sessions: list[tuple[Ed25519PrivateKey, str]],
    count: int,
) -> list[bytes]:
    """``count`` identify bodies, each with a fresh challenge signed by a session."""
    bodies: list[bytes] = []

    async def worker() -> None:
        while len(bodies) < count:
            key, cert = sessions[len(bodies) % len(sessions)]
            async with http.get(f"{url}/p2core/challenge") as response:
                challenge = orjson.loads(await response.read())["challenge"]
            signature = base64.b64encode(key.sign(challenge.encode())).decode()
            bodies.append(
                orjson.dumps(
                    {
                        "completed_challenge": {
                            "challenge": challenge,
                            "signature": signature,
                        },
                        "id_cert": cert,
                    }
                )
            )

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker() for _ in range(32)))
    return bodies


async def _identify(spec: dict[str, Any]) -> dict[str, Any]:
    sessions = [
        (Ed25519PrivateKey.from_private_bytes(bytes.fromhex(s["key"])), s["cert"])
        for s in spec["sessions"]
    ]
    levels = []
    for concurrency in spec["levels"]:
        async with _session(concurrency) as http:
            bodies = await _prepare_bodies(
                http, spec["url"], sessions, spec["requests"]
            )
            levels.append(
                await _post_all(
                    http,
                    f"{spec['url']}/p2core/session/identify",
                    bodies,
                    concurrency,
                    spec["seconds"],
                )
            )
    return {"levels": levels}


async def _post_all(
    http: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
) -> dict[str, Any]:
    """POST the bodies with ``concurrency`` workers until done or out of time."""
    counts = {"ok": 0, "errors": 0}
    deadline = time.monotonic() + seconds
    headers = {"Content-Type": "application/json"}

    async def worker() -> None:
        while bodies and time.monotonic() < deadline:
            body = bodies.pop()
            async with http.post(url, data=body, headers=headers) as response:
                await response.read()
                counts["ok" if response.status == 201 else "errors"] += 1

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    return {
        "concurrency": concurrency,
        **counts,
        "elapsed": elapsed,
        "rate": counts["ok"] / elapsed,
    }


# -- fanout


async def _connect_p2core(
    http: aiohttp.ClientSession, ws_url: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(ws_url, max_msg_size=0)
    hello = orjson.loads((await ws.receive()).data)
    if hello["op"] != 1:
        raise RuntimeError(f"expected Hello, got op {hello['op']}")
    await ws.send_str(_frame(2, {"token": token}))
    return ws


async def _wait_op(ws: aiohttp.ClientWebSocketResponse, op: int) -> Any:
    while True:
        message = await ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket ended waiting for op {op}: {message.type}")
        frame = orjson.loads(message.data)
        if frame["op"] == op:
            return frame


async def _connect_all(
    connect: Callable[[], Awaitable[aiohttp.ClientWebSocketResponse]], count: int
) -> list[aiohttp.ClientWebSocketResponse]:
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    semaphore = asyncio.Semaphore(50)

    async def one() -> None:
        async with semaphore:
            sockets.append(await connect())

    async with asyncio.timeout(_CONNECT_TIMEOUT):
        await asyncio.gather(*(one() for _ in range(count)))
    return sockets


async def _fanout(spec: dict[str, Any]) -> dict[str, Any]:
    events, deadline_s = spec["events"], spec["deadline"]
    is_p2core = spec["kind"] == "p2core"
    http = _session(0)
    tokens = iter(spec.get("tokens", ()))

    async def connect() -> aiohttp.ClientWebSocketResponse:
        if is_p2core:
            ws = await _connect_p2core(http, spec["ws_url"], next(tokens))
            await _wait_op(ws, 12)
        else:
            ws = await http.ws_connect(spec["ws_url"], max_msg_size=0)
            await ws.receive()  # hello
        return ws

    try:
        sockets = await _connect_all(connect, spec["clients"])
        _say({"connected": len(sockets)})
        await _stdin_line()
        marker = '"op":13,' if is_p2core else ""
        done_at: list[float] = []
        counts = [0] * len(sockets)

        async def receive(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            while counts[index] < events:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return
                if marker in message.data:
                    counts[index] += 1
            done_at.append(time.monotonic())

        started = time.monotonic()
        receivers = [
            asyncio.create_task(receive(i, ws)) for i, ws in enumerate(sockets)
        ]
        if is_p2core:
            trigger = _rotate(http, spec, events)
        else:
            trigger = _broadcast(http, spec, events)
        try:
            async with asyncio.timeout(deadline_s):
                await trigger
                await asyncio.gather(*receivers)
        except TimeoutError:
            for task in receivers:
                task.cancel()
        elapsed = (max(done_at) if done_at else time.monotonic()) - started
        closed = sum(1 for ws in sockets if ws.closed)
        result = {
            "clients": len(sockets),
            "events": events,
            "delivered": sum(counts),
            "complete": len(done_at),
            "closed": closed,
            "elapsed": elapsed,
            "rate": sum(counts) / elapsed,
        }
        for ws in sockets:
            await ws.close()
        return result
    finally:
        await http.close()


async def _rotate(
    http: aiohttp.ClientSession, spec: dict[str, Any], events: int
) -> None:
    """Trigger events by Client Key Change: each rotator rotates its ID-Cert."""
    rotators = [dict(r) for r in spec["rotators"]]
    remaining = [events]

    async def rotator(state: dict[str, str]) -> None:
        body = orjson.dumps({"csr": state["csr"]})
        while remaining[0] > 0:
            remaining[0] -= 1
            async with http.post(
                f"{spec['http_url']}/p2core/session/idcert",
                data=body,
                headers={
                    "Authorization": f"Bearer {state['token']}",
                    "Content-Type": "application/json",
                },
            ) as response:
                answer = orjson.loads(await response.read())
                if response.status != 201:
                    raise RuntimeError(f"rotation failed: {answer}")
                state["token"] = answer["token"]

    await asyncio.gather(*(rotator(r) for r in rotators))


async def _broadcast(
    http: aiohttp.ClientSession, spec: dict[str, Any], events: int
) -> None:
    async with http.post(
        f"{spec['http_url']}/_broadcast",
        params={"count": str(events)},
        data=spec["frame"].encode(),
    ) as response:
        if response.status != 204:
            raise RuntimeError(f"broadcast failed: {response.status}")


# -- resume and events


async def _time_resume(
    http: aiohttp.ClientSession, ws_url: str, token: str
) -> tuple[float, bytes]:
    ws = await http.ws_connect(ws_url, max_msg_size=0)
    await ws.receive()  # Hello
    started = time.perf_counter()
    await ws.send_str(_frame(5, {"s": -1, "token": token}))
    while True:
        message = await ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"socket ended before Resumed: {message.type}")
        if '"op":10,' in message.data[:40]:
            break
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed, message.data.encode()


async def _time_base_ws(http: aiohttp.ClientSession, ws_url: str, name: str) -> float:
    ws = await http.ws_connect(ws_url, max_msg_size=0)
    await ws.receive()  # hello
    started = time.perf_counter()
    await ws.send_str(name)
    await ws.receive()
    elapsed = time.perf_counter() - started
    await ws.close()
    return elapsed


async def _time_get(
    http: aiohttp.ClientSession, url: str, token: str | None
) -> tuple[float, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.perf_counter()
    async with http.get(url, headers=headers) as response:
        body = await response.read()
        if response.status != 200:
            raise RuntimeError(f"GET {url} answered {response.status}")
    return time.perf_counter() - started, body


async def _resume(spec: dict[str, Any]) -> dict[str, Any]:
    ours, base = spec["ours"], spec["baseline"]
    sizes: dict[str, Any] = {}
    async with _session(4) as http:
        for size, tokens in spec["resume"].items():
            timings, frame = [], b""
            for token in tokens:
                elapsed, frame = await _time_resume(http, ours["ws_url"], token)
                timings.append(elapsed)
            if frame.count(b'"s":') != int(size):
                raise RuntimeError("Resumed carried the wrong number of events")
            await _store(http, base["http_url"], f"resume{size}", frame)
            sizes.setdefault(size, {})["resume"] = {
                "ours": timings,
                "baseline": [
                    await _time_base_ws(http, base["ws_url"], f"resume{size}")
                    for _ in tokens
                ],
                "bytes": len(frame),
            }
        for size, tokens in spec["events"].items():
            timings, body = [], b""
            for token in tokens:
                elapsed, body = await _time_get(
                    http, f"{ours['http_url']}/p2core/events", token
                )
                timings.append(elapsed)
            if body.count(b'"s":') != int(size):
                raise RuntimeError("/p2core/events gave the wrong number of events")
            await _store(http, base["http_url"], f"/events{size}", body)
            sizes.setdefault(size, {})["events"] = {
                "ours": timings,
                "baseline": [
                    (await _time_get(http, f"{base['http_url']}/events{size}", None))[0]
                    for _ in tokens
                ],
                "bytes": len(body),
            }
    return {"sizes": sizes}


async def _store(http: aiohttp.ClientSession, url: str, path: str, body: bytes) -> None:
    async with http.post(f"{url}/_set", params={"path": path}, data=body) as response:
        if response.status != 204:
            raise RuntimeError(f"baseline refused bytes for {path}")


_MODES: Final = {
    "get": _get,
    "identify": _identify,
    "fanout": _fanout,
    "resume": _resume,
}


async def _main(mode: str, spec_path: str) -> None:
    with open(spec_path, "rb") as spec_file:
        spec = orjson.loads(spec_file.read())
    async with asyncio.timeout(spec.get("timeout", 300)):
        _say(await _MODES[mode](spec))


def main() -> int:
    mode, spec_path = sys.argv[1], sys.argv[2]
    try:
        asyncio.run(_main(mode, spec_path))
    except Exception as exc:
        _say({"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
