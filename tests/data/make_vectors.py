"""
Write the polyproto-rs style DER vectors in ``tests/data/polyproto_rs/``.

The vectors reproduce, byte for byte, the encodings of the polyproto-rs client
library that ``cryptography`` refuses (PROTOCOL section 4):

- ``actor_csr.der``: an actor ID-CSR whose KeyUsage and BasicConstraints are
  plain CSR attributes (types 2.5.29.15 and 2.5.29.19) instead of an
  extensionRequest, with a KeyUsage bit string whose unused-bits count is 0
  (``03 02 00 80``; DER needs 7). Its subject is in the order polyproto-rs
  writes it (uniqueIdentifier, UID, DCs, CN) with UTF8String values.
- ``server_cert.der``: a self-signed server ID-Cert with a BasicConstraints
  pathLen written as the eight octets of a u64 (``02 08 00 .. 00``) and a
  keyCertSign bit string with unused-bits count 5 (``03 02 05 04``; DER needs 2).
- ``actor_cert.der``: an actor ID-Cert signed by that server with an explicit
  ``cA FALSE`` and a non-minimal pathLen (``30 07 01 01 00 02 02 00 00``) and a
  digitalSignature bit string with unused-bits count 0 (``03 02 00 80``).

Keys come from fixed seeds and Ed25519 signatures are deterministic, so the
output never changes; ``tests/server/test_certs.py`` checks the files against
:func:`build_vectors`. Regenerate from the project root with
``python -m tests.data.make_vectors``.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server import der

SERVER_SEED = bytes(range(32))
ACTOR_SEED = bytes(range(32, 64))
NOT_BEFORE = 1_700_000_000  # 2023-11-14
SERVER_NOT_AFTER = 2_000_000_000  # 2033-05-18
ACTOR_NOT_AFTER = NOT_BEFORE + 60 * 86_400
SERVER_SERIAL = 0x01D2C3B4A5
ACTOR_SERIAL = 0x7E57AB1E

CN = "2.5.4.3"
DC = "0.9.2342.19200300.100.1.25"
UID = "0.9.2342.19200300.100.1.1"
UNIQUE_IDENTIFIER = "0.9.2342.19200300.100.1.44"
BASIC_CONSTRAINTS = "2.5.29.19"
KEY_USAGE = "2.5.29.15"

ED25519 = bytes.fromhex("300506032b6570")
# The quirky extension values, exactly as polyproto-rs encodes them.
KU_DIGITAL_SIGNATURE_UNUSED_0 = bytes.fromhex("03020080")
KU_KEY_CERT_SIGN_UNUSED_5 = bytes.fromhex("03020504")
BC_CA_FALSE_EXPLICIT = bytes.fromhex("3003010100")
BC_CA_FALSE_PATHLEN_02_02 = bytes.fromhex("300701010002020000")
BC_CA_TRUE_PATHLEN_U64 = bytes.fromhex("300d0101ff02080000000000000000")


def _rdn(oid: str, value: bytes) -> bytes:
    return der.encode_set(der.encode_sequence(der.encode_oid(oid), value))


def _public_key(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _spki(key: Ed25519PrivateKey) -> bytes:
    return der.encode_sequence(ED25519, der.encode_bit_string(_public_key(key)))


def server_name() -> bytes:
    """``DC=chat, DC=polyphony`` (most significant first), as IA5Strings."""
    return der.encode_sequence(
        _rdn(DC, der.encode_ia5_string("chat")),
        _rdn(DC, der.encode_ia5_string("polyphony")),
    )


def actor_name() -> bytes:
    """The actor subject in polyproto-rs order, every value a UTF8String."""
    return der.encode_sequence(
        _rdn(UNIQUE_IDENTIFIER, der.encode_utf8_string("client1")),
        _rdn(UID, der.encode_utf8_string("flori@polyphony.chat")),
        _rdn(DC, der.encode_utf8_string("chat")),
        _rdn(DC, der.encode_utf8_string("polyphony")),
        _rdn(CN, der.encode_utf8_string("flori")),
    )


def _extension(oid: str, value: bytes) -> bytes:
    return der.encode_sequence(
        der.encode_oid(oid), der.encode_boolean(True), der.encode_octet_string(value)
    )


def _certificate(
    key: Ed25519PrivateKey,
    *,
    serial: int,
    issuer: bytes,
    subject: bytes,
    subject_key: Ed25519PrivateKey,
    not_after: int,
    extensions: list[bytes],
) -> bytes:
    tbs = der.encode_sequence(
        der.encode_explicit(0, der.encode_integer(2)),
        der.encode_integer(serial),
        ED25519,
        issuer,
        der.encode_sequence(der.encode_time(NOT_BEFORE), der.encode_time(not_after)),
        subject,
        _spki(subject_key),
        der.encode_explicit(3, der.encode_sequence(*extensions)),
    )
    return der.encode_sequence(tbs, ED25519, der.encode_bit_string(key.sign(tbs)))


def actor_csr() -> bytes:
    """The polyproto-rs style actor CSR (capabilities as plain attributes)."""
    key = Ed25519PrivateKey.from_private_bytes(ACTOR_SEED)
    attributes = der.encode_tlv(
        der.context_tag(0),
        b"".join(
            sorted(
                [
                    der.encode_sequence(
                        der.encode_oid(KEY_USAGE),
                        der.encode_set(KU_DIGITAL_SIGNATURE_UNUSED_0),
                    ),
                    der.encode_sequence(
                        der.encode_oid(BASIC_CONSTRAINTS),
                        der.encode_set(BC_CA_FALSE_EXPLICIT),
                    ),
                ]
            )
        ),
    )
    info = der.encode_sequence(
        der.encode_integer(0), actor_name(), _spki(key), attributes
    )
    return der.encode_sequence(info, ED25519, der.encode_bit_string(key.sign(info)))


def server_cert() -> bytes:
    """The self-signed server cert with a u64 pathLen and a wrong KU count."""
    key = Ed25519PrivateKey.from_private_bytes(SERVER_SEED)
    return _certificate(
        key,
        serial=SERVER_SERIAL,
        issuer=server_name(),
        subject=server_name(),
        subject_key=key,
        not_after=SERVER_NOT_AFTER,
        extensions=[
            _extension(BASIC_CONSTRAINTS, BC_CA_TRUE_PATHLEN_U64),
            _extension(KEY_USAGE, KU_KEY_CERT_SIGN_UNUSED_5),
        ],
    )


def actor_cert() -> bytes:
    """The actor cert with explicit cA FALSE, pathLen 02 02 00 00, KU count 0."""
    return _certificate(
        Ed25519PrivateKey.from_private_bytes(SERVER_SEED),
        serial=ACTOR_SERIAL,
        issuer=server_name(),
        subject=actor_name(),
        subject_key=Ed25519PrivateKey.from_private_bytes(ACTOR_SEED),
        not_after=ACTOR_NOT_AFTER,
        extensions=[
            _extension(BASIC_CONSTRAINTS, BC_CA_FALSE_PATHLEN_02_02),
            _extension(KEY_USAGE, KU_DIGITAL_SIGNATURE_UNUSED_0),
        ],
    )


def build_vectors() -> dict[str, bytes]:
    """Return the vectors by file name."""
    return {
        "actor_csr.der": actor_csr(),
        "server_cert.der": server_cert(),
        "actor_cert.der": actor_cert(),
    }


def main() -> None:
    """Write the vectors next to this script."""
    directory = Path(__file__).parent / "polyproto_rs"
    directory.mkdir(exist_ok=True)
    for name, data in build_vectors().items():
        (directory / name).write_bytes(data)


if __name__ == "__main__":
    main()
