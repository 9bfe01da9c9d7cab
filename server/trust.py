"""Deciding whether to trust an actor's ID-Cert (PROTOCOL.md section 4, last rule).

For an actor of another server the issuer is that server's ID-Cert, fetched for the
cert's notBefore time; for an actor of this server it is our own cert history.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from storage import certs as cert_store

from .certs import IDCert, InvalidIDCert, check_actor_cert_for, load_server_cert
from .state import ServerState

__all__ = ["verify_actor_cert", "verify_invalidation_signature"]


async def verify_actor_cert(state: ServerState, cert: IDCert, now: int) -> None:
    """Return if ``cert`` is trustworthy right now, else raise.

    Raises:
        InvalidIDCert: a certificate rule, the chain, the validity or an
            invalidation fails.
        HomeServerUnreachable: the actor's home server gave no usable answer.
    """
    subject = cert.subject
    if subject is None:
        raise InvalidIDCert("not an actor id-cert")
    if subject.domain != cert.issuer_domain:
        raise InvalidIDCert(
            f"fid domain {subject.domain!r} differs from issuer {cert.issuer_domain!r}"
        )
    if subject.domain == state.domain:
        stored = await cert_store.server_cert_at(state.db.reader, cert.not_valid_before)
        if stored is None:
            raise InvalidIDCert("no server id-cert of ours was valid at its notBefore")
        current = state.identity.cert
        issuer = current if stored.der == current.der else load_server_cert(stored.der)
        check_actor_cert_for(cert, issuer=issuer, now=now)
        invalidated = {
            c.serial
            for c in await cert_store.list_invalidated(state.db.reader, subject.fid)
        }
    else:
        issuer = await state.federation.server_cert(
            subject.domain, cert.not_valid_before
        )
        check_actor_cert_for(cert, issuer=issuer, now=now)
        invalidated = set(
            await state.federation.invalidated_serials(subject.fid, subject.domain)
        )
    if cert.serial_number in invalidated:
        raise InvalidIDCert(
            f"serial {cert.serial_number} was invalidated by its home server"
        )


def verify_invalidation_signature(
    public_key: bytes, serial: int, invalid_since: int, signature_hex: str
) -> None:
    """Check an Actor Certificate Invalidation signature (core spec 3.2.3.5).

    The signature is Ed25519, by the revoked cert's key, over the decimal
    ``invalidSince`` followed by the decimal ``serial``, sent as hex.

    Raises:
        ValueError: not hex, or it does not verify.
    """
    try:
        signature = bytes.fromhex(signature_hex)
        Ed25519PublicKey.from_public_bytes(public_key).verify(
            signature, f"{invalid_since}{serial}".encode()
        )
    except InvalidSignature as exc:
        raise ValueError("invalidation signature does not verify") from exc
