"""p2core-server (also python -m server): read the config and serve."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from storage.errors import DatabaseUnusable

from .app import create_app
from .config import Config, ConfigError, load_config
from .identity import IdentityError
from .logs import configure_logging

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT; return the exit status."""
    parser = argparse.ArgumentParser(prog="p2core-server", description=__doc__)
    parser.add_argument("--config", help="TOML config file (default: ./config.toml)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"p2core-server: config error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.logging.level, config.logging.format)
    # The database holds password and token hashes, the key file the server key:
    # nothing this process creates is for other users.
    os.umask(0o077)
    try:
        asyncio.run(serve(config))
    except (DatabaseUnusable, IdentityError, OSError) as exc:
        print(f"p2core-server: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


async def serve(config: Config) -> None:
    """Serve ``config`` until a stop signal arrives, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        await site.start()
        logger.info(
            "listening host=%s port=%d url=%s",
            config.server.host,
            config.server.port,
            config.base_url,
        )
        await stop.wait()
        logger.info("stop signal received, shutting down")
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


if __name__ == "__main__":
    sys.exit(main())
