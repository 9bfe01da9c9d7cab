"""Requests to other polyproto servers (PROTOCOL.md section 7).

Finds a domain's API, fetches its server ID-Cert for a point in time and the
invalidation list of its actors, with timeouts, a response size cap, a TTL
cache, no redirects to another host, and no private addresses unless allowed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .certs import CertificateError, IDCert, decode_cert_input, load_server_cert
from .config import Config

__all__ = ["FederationClient", "HomeServerUnreachable", "MAX_RESPONSE_BYTES"]

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES: Final = 64 * 1024
_MAX_REDIRECTS: Final = 3


class HomeServerUnreachable(Exception):
    """The actor's home server did not give a usable answer."""

    def __init__(self, domain: str, reason: str) -> None:
        super().__init__(f"home server {domain!r} unreachable: {reason}")
        self.domain = domain
        self.reason = reason


class _PublicOnlyResolver(AbstractResolver):
    """Resolve names, refusing loopback, private, link-local and reserved addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if is_public_address(r["host"])]
        if not allowed:
            raise OSError(f"{host!r} resolves only to non-public addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def is_public_address(host: str) -> bool:
    """Whether an IP address is globally routable (not loopback, private, ...)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True, slots=True)
class _Cached:
    value: Any
    fetched: float


class FederationClient:
    """Fetches and caches what this server needs to know of other servers."""

    def __init__(self, config: Config) -> None:
        self._config = config.federation
        self._peers = {k.lower(): v.rstrip("/") for k, v in self._config.peers.items()}
        self._ttl = float(self._config.cache_ttl_s)
        self._session: aiohttp.ClientSession | None = None
        self._peer_session: aiohttp.ClientSession | None = None
        self._bases: dict[str, _Cached] = {}
        self._server_certs: dict[str, list[_Cached]] = {}
        self._invalidated: dict[str, _Cached] = {}

    async def close(self) -> None:
        for session in (self._session, self._peer_session):
            if session is not None:
                await session.close()

    def _client(self, trusted: bool) -> aiohttp.ClientSession:
        """Configured peers and allowed private nets skip the filter."""
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_s)
        if trusted or self._config.allow_private_addresses:
            if self._peer_session is None:
                self._peer_session = aiohttp.ClientSession(timeout=timeout)
            return self._peer_session
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver())
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._session

    async def api_base(self, domain: str) -> str:
        """The base URL of ``domain``'s server, without the ``/p2core/`` part."""
        if domain in self._peers:
            return self._peers[domain]
        cached = self._fresh(self._bases.get(domain))
        if cached is not None:
            return str(cached)
        base = f"https://{domain}"
        try:
            answer = await self._get_json(domain, f"{base}/.well-known/polyproto-core")
            api = answer["api"] if isinstance(answer, dict) else None
            if isinstance(api, str) and api.startswith(("https://", "http://")):
                base = api.rstrip("/").removesuffix("/p2core")
        except HomeServerUnreachable as exc:
            logger.debug(
                "no well-known document domain=%s reason=%s", domain, exc.reason
            )
        self._bases[domain] = _Cached(base, time.monotonic())
        return base

    async def server_cert(self, domain: str, at: int) -> IDCert:
        """``domain``'s server ID-Cert that was in force at time ``at``.

        Raises:
            HomeServerUnreachable: no answer, or an answer that is not such a cert.
        """
        for entry in self._server_certs.get(domain, ()):
            cert: IDCert = entry.value
            fresh = time.monotonic() - entry.fetched <= self._ttl
            if fresh and cert.not_valid_before <= at <= cert.not_valid_after:
                return cert
        base = await self.api_base(domain)
        answer = await self._get_json(
            domain, f"{base}/p2core/key/server?timestamp={at}"
        )
        try:
            if not isinstance(answer, str):
                raise CertificateError("answer is not a JSON string")
            cert = load_server_cert(decode_cert_input(answer))
        except (CertificateError, ValueError) as exc:
            raise HomeServerUnreachable(domain, f"bad server id-cert: {exc}") from exc
        if cert.issuer_domain != domain:
            raise HomeServerUnreachable(
                domain, f"server id-cert is for {cert.issuer_domain!r}"
            )
        entries = [
            e
            for e in self._server_certs.get(domain, [])
            if time.monotonic() - e.fetched <= self._ttl
            and e.value.serial_number != cert.serial_number
        ]
        entries.append(_Cached(cert, time.monotonic()))
        self._server_certs[domain] = entries[-16:]
        return cert

    async def invalidated_serials(self, fid: str, domain: str) -> frozenset[int]:
        """Serial numbers of ``fid``'s certs that its home server lists as invalidated.

        Raises:
            HomeServerUnreachable: no usable answer.
        """
        cached = self._fresh(self._invalidated.get(fid))
        if cached is not None:
            return frozenset(cached)
        base = await self.api_base(domain)
        url = f"{base}/p2core/key/user/{quote(fid, safe='@')}/invalidated"
        answer = await self._get_json(domain, url)
        try:
            serials = frozenset(int(item["serial"]) for item in answer)
        except (TypeError, KeyError, ValueError) as exc:
            raise HomeServerUnreachable(domain, "bad invalidation list") from exc
        self._invalidated[fid] = _Cached(serials, time.monotonic())
        return serials

    def _fresh(self, entry: _Cached | None) -> Any:
        if entry is None or time.monotonic() - entry.fetched > self._ttl:
            return None
        return entry.value

    async def _get_json(self, domain: str, url: str) -> Any:
        trusted = domain in self._peers
        client = self._client(trusted)
        host = urlsplit(url).hostname
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                async with client.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        target = response.headers.get("Location", "")
                        url = str(response.url.join(URL(target)))
                        if urlsplit(url).hostname != host:
                            raise HomeServerUnreachable(
                                domain, "redirect to another host"
                            )
                        continue
                    body = await response.content.read(MAX_RESPONSE_BYTES + 1)
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise HomeServerUnreachable(domain, "response too large")
                    if response.status != 200:
                        raise HomeServerUnreachable(domain, f"status {response.status}")
                    return orjson.loads(body)
            raise HomeServerUnreachable(domain, "too many redirects")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise HomeServerUnreachable(domain, type(exc).__name__) from exc
        except orjson.JSONDecodeError as exc:
            raise HomeServerUnreachable(domain, "answer is not JSON") from exc
