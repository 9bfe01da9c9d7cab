"""
Build MLS KeyPackages (RFC 9420 section 10) for tests.

:func:`make_keypackage` builds real KeyPackages with the independent ``rfc9420``
implementation from PyPI; route tests use it to upload KeyPackages whose leaf
signature key is a session's Ed25519 key. :func:`encode_keypackage` is a small
encoder of our own that can set every field, including ones ``rfc9420`` refuses
to produce (duplicate extensions, unknown credential types, other leaf sources),
and signs with the Ed25519 key it is given.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from rfc9420 import DefaultCryptoProvider
from rfc9420.extensions.extensions import build_capabilities_data
from rfc9420.messages.data_structures import (
    CipherSuite,
    Credential,
    Signature,
)
from rfc9420.messages.key_packages import KeyPackage, LeafNode, LeafNodeSource
from rfc9420.messages.messages import MLSMessage, ProtocolVersion, WireFormat

__all__ = [
    "DEFAULT_LIFETIME_S",
    "basic_credential",
    "capabilities",
    "encode_keypackage",
    "encode_varint",
    "encode_vector",
    "make_keypackage",
    "wrap_in_mlsmessage",
    "x25519_public_key",
    "x509_credential",
]

DEFAULT_LIFETIME_S: Final = 90 * 24 * 3600
"""Default validity of a test KeyPackage after its creation."""

_BACKDATE_S: Final = 3600


def _lifetime(not_before: int | None, not_after: int | None) -> tuple[int, int]:
    """Fill in default lifetime bounds around the current time."""
    now = int(time.time())
    if not_before is None:
        not_before = now - _BACKDATE_S
    if not_after is None:
        not_after = now + DEFAULT_LIFETIME_S
    return not_before, not_after


def make_keypackage(
    signature_private_key: Ed25519PrivateKey,
    *,
    cipher_suite: int = 1,
    not_before: int | None = None,
    not_after: int | None = None,
    init_key: bytes | None = None,
    encryption_key: bytes | None = None,
    version: int = 1,
    identity: bytes = b"p2core-test",
    wrap: bool = False,
) -> bytes:
    """
    Build a signed KeyPackage with the ``rfc9420`` library.

    Args:
        signature_private_key: the leaf's Ed25519 key; it signs the LeafNode and
            the KeyPackage and its public key becomes the leaf ``signature_key``.
        cipher_suite: the KeyPackage cipher suite id (only 1 and 3 are
            Ed25519 suites; others produce a KeyPackage signed with Ed25519
            anyway, for negative tests).
        not_before: leaf lifetime start; default one hour ago.
        not_after: leaf lifetime end; default 90 days from now.
        init_key: HPKE init key; default a fresh X25519 public key.
        encryption_key: leaf HPKE encryption key; default a fresh X25519 key.
        version: the KeyPackage protocol version (1 is mls10).
        identity: the identity of the leaf's basic credential.
        wrap: return an MLSMessage (wire format mls_key_package) around it.

    Returns:
        The TLS-encoded KeyPackage, or MLSMessage when ``wrap`` is true.
    """
    not_before, not_after = _lifetime(not_before, not_after)
    hpke = DefaultCryptoProvider(1)
    if init_key is None:
        init_key = hpke.generate_key_pair()[1]
    if encryption_key is None:
        encryption_key = hpke.generate_key_pair()[1]
    private = signature_private_key.private_bytes_raw()
    public = signature_private_key.public_key().public_bytes_raw()

    # The signer is always an Ed25519 suite: the KeyPackage may claim another one.
    signer = DefaultCryptoProvider(1)
    suite = CipherSuite.deserialize(cipher_suite.to_bytes(2, "big"))
    leaf = LeafNode(
        encryption_key=encryption_key,
        signature_key=public,
        capabilities=build_capabilities_data([cipher_suite], []),
        credential=Credential(identity=identity, public_key=public),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime_not_before=not_before,
        lifetime_not_after=not_after,
    )
    leaf_signature = signer.sign_with_label(
        private, b"LeafNodeTBS", leaf.tbs_serialize()
    )
    leaf = dataclasses.replace(leaf, signature=Signature(leaf_signature))
    unsigned = KeyPackage(
        version=version,  # type: ignore[arg-type]  # any uint16, for negative tests
        cipher_suite=suite,
        init_key=init_key,
        leaf_node=leaf,
    )
    signature = signer.sign_with_label(
        private, b"KeyPackageTBS", unsigned.tbs_serialize()
    )
    package = dataclasses.replace(unsigned, signature=Signature(signature))
    if wrap:
        return MLSMessage.from_key_package(package, ProtocolVersion.MLS10).serialize()
    return package.serialize()


# --- our own encoder ------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """Encode ``value`` as a minimal RFC 9420 section 2.1.2 variable-length integer."""
    if value < 0x40:
        return value.to_bytes(1, "big")
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x8000_0000).to_bytes(4, "big")


def encode_vector(body: bytes) -> bytes:
    """Encode ``body`` as ``opaque <V>``."""
    return encode_varint(len(body)) + body


def _uint16s(values: Sequence[int]) -> bytes:
    return encode_vector(b"".join(v.to_bytes(2, "big") for v in values))


def _extensions(items: Sequence[tuple[int, bytes]]) -> bytes:
    body = b"".join(t.to_bytes(2, "big") + encode_vector(d) for t, d in items)
    return encode_vector(body)


def basic_credential(identity: bytes = b"p2core-test") -> bytes:
    """Encode a basic Credential (RFC 9420 section 5.3)."""
    return (1).to_bytes(2, "big") + encode_vector(identity)


def x509_credential(certificates: Sequence[bytes]) -> bytes:
    """Encode an x509 Credential holding ``certificates`` (DER, unchecked)."""
    body = b"".join(encode_vector(c) for c in certificates)
    return (2).to_bytes(2, "big") + encode_vector(body)


def capabilities(
    cipher_suites: Sequence[int] = (1,),
    credentials: Sequence[int] = (1, 2),
) -> bytes:
    """Encode Capabilities (RFC 9420 section 7.2) with mls10 and no extensions."""
    return (
        _uint16s([1])
        + _uint16s(cipher_suites)
        + _uint16s([])
        + _uint16s([])
        + _uint16s(credentials)
    )


def x25519_public_key() -> bytes:
    """Return a fresh raw X25519 public key."""
    return X25519PrivateKey.generate().public_key().public_bytes_raw()


def _sign_with_label(key: Ed25519PrivateKey, label: bytes, content: bytes) -> bytes:
    """SignWithLabel (RFC 9420 section 5.1.2) with Ed25519."""
    sign_content = encode_vector(b"MLS 1.0 " + label) + encode_vector(content)
    return key.sign(sign_content)


def encode_keypackage(
    signature_private_key: Ed25519PrivateKey,
    *,
    version: int = 1,
    cipher_suite: int = 1,
    init_key: bytes | None = None,
    encryption_key: bytes | None = None,
    signature_key: bytes | None = None,
    credential: bytes | None = None,
    leaf_capabilities: bytes | None = None,
    leaf_node_source: int = 1,
    not_before: int | None = None,
    not_after: int | None = None,
    parent_hash: bytes = b"",
    leaf_extensions: Sequence[tuple[int, bytes]] = (),
    extensions: Sequence[tuple[int, bytes]] = (),
    leaf_signature: bytes | None = None,
    signature: bytes | None = None,
) -> bytes:
    """
    Encode and sign a KeyPackage with every field chosen by the caller.

    Defaults give a valid suite-1 KeyPackage like :func:`make_keypackage`.
    ``signature_key`` overrides the leaf's key (default: the signer's public
    key); ``leaf_signature`` and ``signature`` replace the computed signatures.
    For leaf sources other than key_package the leaf is signed over its content
    alone, which is enough for tests that expect it to be refused anyway.
    """
    not_before, not_after = _lifetime(not_before, not_after)
    if init_key is None:
        init_key = x25519_public_key()
    if encryption_key is None:
        encryption_key = x25519_public_key()
    if signature_key is None:
        signature_key = signature_private_key.public_key().public_bytes_raw()
    leaf = (
        encode_vector(encryption_key)
        + encode_vector(signature_key)
        + (basic_credential() if credential is None else credential)
        + (capabilities() if leaf_capabilities is None else leaf_capabilities)
        + leaf_node_source.to_bytes(1, "big")
    )
    if leaf_node_source == 1:
        leaf += not_before.to_bytes(8, "big") + not_after.to_bytes(8, "big")
    elif leaf_node_source == 3:
        leaf += encode_vector(parent_hash)
    leaf += _extensions(leaf_extensions)
    if leaf_signature is None:
        leaf_signature = _sign_with_label(signature_private_key, b"LeafNodeTBS", leaf)
    leaf += encode_vector(leaf_signature)

    tbs = (
        version.to_bytes(2, "big")
        + cipher_suite.to_bytes(2, "big")
        + encode_vector(init_key)
        + leaf
        + _extensions(extensions)
    )
    if signature is None:
        signature = _sign_with_label(signature_private_key, b"KeyPackageTBS", tbs)
    return tbs + encode_vector(signature)


def wrap_in_mlsmessage(
    keypackage: bytes, *, version: int = 1, wire_format: int = WireFormat.KEY_PACKAGE
) -> bytes:
    """Put ``keypackage`` in an MLSMessage (RFC 9420 section 6)."""
    return version.to_bytes(2, "big") + wire_format.to_bytes(2, "big") + keypackage
