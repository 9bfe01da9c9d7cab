"""The baseline: a bare aiohttp server that sends prepared bytes and nothing else.

``python -m bench.baseline_server --port PORT`` listens on 127.0.0.1 only.

- ``POST /_set?path=P`` stores the request body as the answer for ``GET P``;
  any other ``GET`` answers the stored bytes as ``application/json``.
- ``GET /_ws`` is a WebSocket: it sends ``hello`` on connect; a text frame naming
  a stored path is answered with those bytes as one text frame.
- ``POST /_broadcast?count=N`` sends its body N times to every connected
  ``/_ws`` socket, one ``send_frame`` per socket, and answers when done.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import WSMsgType, web

__all__ = ["create_app", "main"]

_ANSWERS = web.AppKey("answers", dict[str, bytes])
_SOCKETS = web.AppKey("sockets", set[web.WebSocketResponse])


async def _set(request: web.Request) -> web.Response:
    request.app[_ANSWERS][request.query["path"]] = await request.read()
    return web.Response(status=204)


async def _get(request: web.Request) -> web.Response:
    body = request.app[_ANSWERS].get(request.path)
    if body is None:
        raise web.HTTPNotFound()
    return web.Response(body=body, content_type="application/json")


async def _ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _socket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024)
    await ws.prepare(request)
    sockets = request.app[_SOCKETS]
    sockets.add(ws)
    try:
        await ws.send_str("hello")
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                body = request.app[_ANSWERS].get(message.data, b"")
                await ws.send_frame(body, WSMsgType.TEXT)
    finally:
        sockets.discard(ws)
    return ws


async def _broadcast(request: web.Request) -> web.Response:
    frame = await request.read()
    count = int(request.query["count"])
    sockets = tuple(request.app[_SOCKETS])
    for _ in range(count):
        for ws in sockets:
            await ws.send_frame(frame, WSMsgType.TEXT)
    return web.Response(status=204)


def create_app() -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_ANSWERS] = {}
    app[_SOCKETS] = set()
    app.router.add_get("/_ready", _ready)
    app.router.add_get("/_ws", _socket)
    app.router.add_post("/_set", _set)
    app.router.add_post("/_broadcast", _broadcast)
    app.router.add_get("/{tail:.*}", _get)
    return app


async def _serve(port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
