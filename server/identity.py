"""The server's own identity: its Ed25519 key file and its root ID-Cert history."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from storage import certs as cert_store
from storage.db import Connection, Database

from . import clock
from .certs import IDCert, load_server_cert
from .issuing import build_server_cert, new_serial_number

__all__ = ["IdentityError", "KEY_FILE", "ServerIdentity", "load_or_create", "rotate"]

logger = logging.getLogger(__name__)

KEY_FILE: Final = "server_key.pem"
DAY: Final = 86400


class IdentityError(Exception):
    """The key file or the stored server ID-Cert cannot be used."""


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """The signing key and the current root ID-Cert of this server."""

    key: Ed25519PrivateKey
    cert: IDCert
    # Set while a rotation replaces this identity: the first second that belongs
    # to the new server cert. Certs this key still signs must start before it.
    retiring_at: int | None = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes_raw()


async def load_or_create(
    db: Database, data_dir: Path, domain: str, lifetime_days: int
) -> ServerIdentity:
    """Load the key and current cert, creating both on first start.

    Raises:
        IdentityError: the key is missing although certs exist, unreadable, or does
            not match the current cert.
    """
    key_path = data_dir / KEY_FILE
    stored = await cert_store.current_server_cert(db.reader)
    if key_path.exists():
        key = _read_key(key_path)
    elif stored is None:
        key = Ed25519PrivateKey.generate()
        _write_key(key_path, key)
        logger.info("server key created path=%s", key_path)
    else:
        raise IdentityError(f"server key {str(key_path)!r} is missing")
    if stored is None:
        return await _issue(db, key, domain, lifetime_days)
    cert = load_server_cert(stored.der)
    if cert.public_key != key.public_key().public_bytes_raw():
        raise IdentityError(
            f"server key {str(key_path)!r} does not match the current server ID-Cert"
        )
    if cert.issuer_domain != domain:
        raise IdentityError(
            f"server.domain {domain!r} differs from the server ID-Cert's "
            f"domain {cert.issuer_domain!r}"
        )
    return ServerIdentity(key, cert)


async def rotate(
    db: Database,
    data_dir: Path,
    current: ServerIdentity,
    lifetime_days: int,
    switch: int,
) -> ServerIdentity:
    """Store a new key and root cert that take over at ``switch``; return them.

    The old cert ends where the new one starts, so that every timestamp names
    exactly one server cert (timestamps are whole seconds).
    """
    key = Ed25519PrivateKey.generate()
    async with db.transaction() as conn:
        old = await cert_store.current_server_cert(conn)
        assert old is not None
        await cert_store.replace_server_cert(conn, old.id, switch)
        identity = await _store_new_cert(
            conn, key, current.cert.issuer_domain, lifetime_days, switch
        )
        _write_key(data_dir / KEY_FILE, key)
    logger.info("server id-cert rotated serial=%d", identity.cert.serial_number)
    return identity


async def _issue(
    db: Database, key: Ed25519PrivateKey, domain: str, lifetime_days: int
) -> ServerIdentity:
    async with db.transaction() as conn:
        identity = await _store_new_cert(conn, key, domain, lifetime_days, clock.now())
    logger.info(
        "server id-cert issued domain=%s serial=%d", domain, identity.cert.serial_number
    )
    return identity


async def _store_new_cert(
    conn: Connection,
    key: Ed25519PrivateKey,
    domain: str,
    lifetime_days: int,
    now: int,
) -> ServerIdentity:
    der = build_server_cert(
        key,
        domain,
        serial_number=new_serial_number(),
        not_valid_before=now,
        not_valid_after=now + lifetime_days * DAY,
    )
    cert = load_server_cert(der)
    await cert_store.insert_server_cert(
        conn,
        serial=cert.serial_number,
        der=der,
        not_before=cert.not_valid_before,
        not_after=cert.not_valid_after,
    )
    return ServerIdentity(key, cert)


def _read_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except OSError as exc:
        raise IdentityError(
            f"cannot read server key {str(path)!r}: {exc.strerror}"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise IdentityError(
            f"server key {str(path)!r} is not a PEM private key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise IdentityError(f"server key {str(path)!r} is not an Ed25519 key")
    return key


def _write_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write the key with mode 0600, atomically replacing any previous file."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
