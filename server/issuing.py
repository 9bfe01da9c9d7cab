"""Issuing ID-Certs: the server's self-signed root and actor certs from CSRs.

What the server issues is minimal DER with exactly two extensions, both critical
(PROTOCOL.md section 4): BasicConstraints and KeyUsage. The issuer field of an
actor cert is the exact encoded subject of the server's own ID-Cert.
"""

from __future__ import annotations

import secrets
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .certs import (
    BASIC_CONSTRAINTS_OID,
    CSR,
    DC_OID,
    ED25519_OID,
    KEY_USAGE_OID,
    MAX_SERIAL,
    IDCert,
    checked_domain,
)
from .der import (
    DERError,
    encode_bit_string,
    encode_boolean,
    encode_explicit,
    encode_ia5_string,
    encode_integer,
    encode_octet_string,
    encode_oid,
    encode_sequence,
    encode_set,
    encode_time,
)

__all__ = ["build_server_cert", "issue_actor_cert", "new_serial_number"]


def _extension(oid: str, value: bytes) -> bytes:
    return encode_sequence(
        encode_oid(oid), encode_boolean(True), encode_octet_string(value)
    )


_ED25519_ALGORITHM: Final = encode_sequence(encode_oid(ED25519_OID))
_ACTOR_EXTENSIONS: Final = encode_explicit(
    3,
    encode_sequence(
        _extension(BASIC_CONSTRAINTS_OID, encode_sequence()),
        _extension(KEY_USAGE_OID, encode_bit_string(b"\x80", 7)),
    ),
)
_ROOT_EXTENSIONS: Final = encode_explicit(
    3,
    encode_sequence(
        _extension(
            BASIC_CONSTRAINTS_OID,
            encode_sequence(encode_boolean(True), encode_integer(0)),
        ),
        _extension(KEY_USAGE_OID, encode_bit_string(b"\x04", 2)),
    ),
)


def new_serial_number() -> int:
    """Return a random positive serial number of at most 20 octets in DER."""
    return secrets.randbelow(MAX_SERIAL - 1) + 1


def _server_name(domain: str) -> bytes:
    rdns = [
        encode_set(encode_sequence(encode_oid(DC_OID), encode_ia5_string(label)))
        for label in reversed(domain.split("."))
    ]
    return encode_sequence(*rdns)


def _check_issue_arguments(serial_number: int, not_before: int, not_after: int) -> None:
    if not 0 < serial_number < MAX_SERIAL:
        raise ValueError(f"serial number {serial_number!r} is out of range")
    if not_after < not_before:
        raise ValueError(f"validity {not_before!r}..{not_after!r} is empty")


def _sign(
    key: Ed25519PrivateKey,
    *,
    serial_number: int,
    issuer: bytes,
    subject: bytes,
    validity: tuple[int, int],
    public_key: bytes,
    extensions: bytes,
) -> bytes:
    try:
        times = encode_sequence(encode_time(validity[0]), encode_time(validity[1]))
    except DERError as exc:
        raise ValueError(f"validity {validity!r} cannot be encoded") from exc
    tbs = encode_sequence(
        encode_explicit(0, encode_integer(2)),
        encode_integer(serial_number),
        _ED25519_ALGORITHM,
        issuer,
        times,
        subject,
        encode_sequence(_ED25519_ALGORITHM, encode_bit_string(public_key)),
        extensions,
    )
    signature = key.sign(tbs)
    return encode_sequence(tbs, _ED25519_ALGORITHM, encode_bit_string(signature))


def _raw_public_key(key: Ed25519PrivateKey) -> bytes:
    if not isinstance(key, Ed25519PrivateKey):
        raise TypeError(f"expected an Ed25519PrivateKey, got {type(key).__name__}")
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def build_server_cert(
    private_key: Ed25519PrivateKey,
    domain: str,
    *,
    serial_number: int,
    not_valid_before: int,
    not_valid_after: int,
) -> bytes:
    """
    Build the self-signed server (root) ID-Cert for ``domain`` as DER.

    The subject and issuer are the DCs of ``domain``, most significant first;
    the extensions are BasicConstraints (cA true, pathLen 0) and KeyUsage
    (keyCertSign), both critical.

    Raises:
        TypeError: ``private_key`` is not an Ed25519 private key.
        ValueError: a bad domain, serial number or validity period.
    """
    public_key = _raw_public_key(private_key)
    domain = checked_domain(domain)
    _check_issue_arguments(serial_number, not_valid_before, not_valid_after)
    name = _server_name(domain)
    return _sign(
        private_key,
        serial_number=serial_number,
        issuer=name,
        subject=name,
        validity=(not_valid_before, not_valid_after),
        public_key=public_key,
        extensions=_ROOT_EXTENSIONS,
    )


def issue_actor_cert(
    csr: CSR,
    *,
    issuer_key: Ed25519PrivateKey,
    issuer_cert: IDCert,
    serial_number: int,
    not_valid_before: int,
    not_valid_after: int,
) -> bytes:
    """
    Issue an actor ID-Cert for a checked CSR, as DER.

    The issuer is ``issuer_cert.subject_der`` byte for byte and the subject is
    ``csr.subject_der``; the only extensions are BasicConstraints (cA false)
    and KeyUsage (digitalSignature), both critical. Nothing else from the CSR
    is copied. notAfter is capped at the issuer's notAfter.

    Raises:
        TypeError: ``issuer_key`` is not an Ed25519 private key.
        ValueError: the key does not belong to ``issuer_cert``, the issuer is not
            a CA of the CSR's domain, or a bad serial number or validity period.
    """
    if not issuer_cert.is_ca or issuer_cert.subject is not None:
        raise ValueError("issuer certificate is not a server root certificate")
    if _raw_public_key(issuer_key) != issuer_cert.public_key:
        raise ValueError("issuer key does not belong to the issuer certificate")
    if csr.subject.domain != issuer_cert.issuer_domain:
        raise ValueError(
            f"csr domain {csr.subject.domain!r} is not the issuer domain "
            f"{issuer_cert.issuer_domain!r}"
        )
    if not_valid_before < issuer_cert.not_valid_before:
        raise ValueError("notbefore lies before the issuer certificate's notbefore")
    not_valid_after = min(not_valid_after, issuer_cert.not_valid_after)
    _check_issue_arguments(serial_number, not_valid_before, not_valid_after)
    return _sign(
        issuer_key,
        serial_number=serial_number,
        issuer=issuer_cert.subject_der,
        subject=csr.subject_der,
        validity=(not_valid_before, not_valid_after),
        public_key=csr.public_key,
        extensions=_ACTOR_EXTENSIONS,
    )
