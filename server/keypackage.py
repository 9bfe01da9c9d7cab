"""
Decode and verify MLS KeyPackages uploaded by sessions.

Implements the KeyPackage rules of the contract (PROTOCOL.md section 6) on top of
RFC 9420: the TLS presentation language with variable-length vector headers
(section 2.1.2), SignWithLabel (section 5.1.2), the MLSMessage wrapper (section 6),
Credential (section 5.3), LeafNode (section 7.2) and KeyPackage (section 10). The
module is free of I/O: the routes decode the base64 body, call
:func:`decode_keypackage` then :func:`verify_keypackage`, and store the result.

Only the Ed25519 cipher suites 1 and 3 are accepted; both use DHKEM(X25519), so
``init_key`` and ``encryption_key`` are 32 bytes and signatures are 64 bytes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "MAX_KEYPACKAGE_BYTES",
    "MLS10",
    "SUPPORTED_CIPHER_SUITES",
    "WIRE_FORMAT_KEY_PACKAGE",
    "CredentialType",
    "KeyPackage",
    "KeyPackageError",
    "LeafNodeSource",
    "decode_keypackage",
    "is_expired",
    "verify_keypackage",
]

MLS10: Final = 1
"""ProtocolVersion mls10 (RFC 9420 section 6)."""

WIRE_FORMAT_KEY_PACKAGE: Final = 5
"""WireFormat mls_key_package (RFC 9420 section 6)."""

_KNOWN_WIRE_FORMATS: Final = frozenset({1, 2, 3, 4, 5})

SUPPORTED_CIPHER_SUITES: Final = frozenset({1, 3})
"""MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519 and its ChaCha20Poly1305 twin."""

MAX_KEYPACKAGE_BYTES: Final = 65536
"""Upper bound on an encoded KeyPackage; X.509 chains fit well below it."""

_X25519_KEY_BYTES: Final = 32
_ED25519_KEY_BYTES: Final = 32
_SIGN_LABEL_PREFIX: Final = b"MLS 1.0 "


class LeafNodeSource(enum.IntEnum):
    """Where a LeafNode comes from (RFC 9420 section 7.2)."""

    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


class CredentialType(enum.IntEnum):
    """Credential types this module can decode (RFC 9420 section 5.3)."""

    BASIC = 1
    X509 = 2


class KeyPackageError(ValueError):
    """
    A KeyPackage fails decoding or a validation rule.

    ``str()`` is a lowercase fragment naming the rule that failed.
    """


@dataclass(frozen=True, slots=True)
class KeyPackage:
    """
    A decoded, not necessarily verified, KeyPackage (RFC 9420 section 10).

    ``not_before`` and ``not_after`` come from the leaf's lifetime. They are
    ``None`` when ``leaf_node_source`` is not ``key_package``: such a leaf is
    well-formed MLS but not a valid KeyPackage, so :func:`decode_keypackage`
    accepts it and :func:`verify_keypackage` rejects it.

    The fields after ``not_after`` hold what :func:`verify_keypackage` needs:
    the leaf's source and credential type, the signed byte ranges and the two
    signatures.
    """

    raw: bytes = field(repr=False)
    version: int
    cipher_suite: int
    init_key: bytes
    encryption_key: bytes
    signature_key: bytes
    not_before: int | None
    not_after: int | None
    leaf_node_source: int
    credential_type: int
    leaf_node_tbs: bytes = field(repr=False)
    leaf_node_signature: bytes = field(repr=False)
    keypackage_tbs: bytes = field(repr=False)
    signature: bytes = field(repr=False)


class _Reader:
    """
    Cursor over ``data[pos:end]`` that raises KeyPackageError on any overrun.

    Offsets in messages count from the start of the KeyPackage, also inside
    nested vectors.
    """

    __slots__ = ("_data", "_end", "_pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self._data = data
        self._pos = pos
        self._end = len(data) if end is None else end

    @property
    def pos(self) -> int:
        """Offset of the next unread byte."""
        return self._pos

    def at_end(self) -> bool:
        """Tell whether every byte has been read."""
        return self._pos == self._end

    def _skip(self, n: int, what: str) -> int:
        """Advance past ``n`` bytes of the field ``what``; return where they start."""
        available = self._end - self._pos
        if n > available:
            raise KeyPackageError(
                f"truncated {what}: need {n} bytes at offset {self._pos}, "
                f"have {available}"
            )
        start = self._pos
        self._pos += n
        return start

    def take(self, n: int, what: str) -> bytes:
        """Read exactly ``n`` bytes of the field ``what``."""
        start = self._skip(n, what)
        return self._data[start : start + n]

    def uint(self, size: int, what: str) -> int:
        """Read a big-endian unsigned integer of ``size`` bytes."""
        return int.from_bytes(self.take(size, what), "big")

    def varint(self, what: str) -> int:
        """Read a variable-length integer (RFC 9420 section 2.1.2)."""
        start = self._pos
        first = self.uint(1, what)
        prefix = first >> 6
        if prefix == 3:
            raise KeyPackageError(
                f"invalid length prefix 0b11 in {what} at offset {start}"
            )
        size = 1 << prefix
        value = first & 0x3F
        if size > 1:
            value = (value << (8 * (size - 1))) | self.uint(size - 1, what)
        # The RFC requires the shortest encoding: 1 byte up to 63, 2 up to 16383.
        if (size == 2 and value < 0x40) or (size == 4 and value < 0x4000):
            raise KeyPackageError(
                f"non-minimal length {value} in {what} at offset {start}"
            )
        return value

    def vector(self, what: str) -> bytes:
        """Read an ``opaque <V>`` vector: varint length then that many bytes."""
        return self.take(self.varint(what), what)

    def sub(self, what: str) -> _Reader:
        """Read a ``<V>`` vector header and return a reader over its body."""
        length = self.varint(what)
        start = self._skip(length, what)
        return _Reader(self._data, start, start + length)

    def finish(self, what: str) -> None:
        """Require that nothing is left after ``what``."""
        if not self.at_end():
            extra = self._end - self._pos
            raise KeyPackageError(
                f"{extra} trailing bytes after {what} at offset {self._pos}"
            )


def decode_keypackage(data: bytes) -> KeyPackage:
    """
    Decode a KeyPackage, bare or wrapped in an MLSMessage.

    A wrapped one is recognised by an MLSMessage header whose wire format is a
    known one (1 to 5) followed by a KeyPackage version of mls10; a bare
    KeyPackage of a supported suite cannot look like that, because its fifth
    byte is the length of a 32-byte ``init_key``. Every length is checked
    against the bytes left, variable-length headers must be minimal, and no
    byte may follow the KeyPackage.

    Args:
        data: the encoded KeyPackage or MLSMessage.

    Returns:
        The decoded KeyPackage; ``raw`` holds the bare KeyPackage bytes.

    Raises:
        TypeError: ``data`` is not bytes-like.
        KeyPackageError: the encoding is malformed; nothing else is raised for
            any bytes-like input.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_KEYPACKAGE_BYTES:
        raise KeyPackageError(
            f"keypackage is {len(data)} bytes, more than {MAX_KEYPACKAGE_BYTES}"
        )

    if _looks_like_mlsmessage(data):
        data = _unwrap_mlsmessage(data)
    return _decode_bare(data)


def _looks_like_mlsmessage(data: bytes) -> bool:
    """Tell whether ``data`` starts with an MLSMessage header (RFC 9420 section 6)."""
    if len(data) < 6:
        return False
    wire_format = int.from_bytes(data[2:4], "big")
    inner_version = int.from_bytes(data[4:6], "big")
    return wire_format in _KNOWN_WIRE_FORMATS and inner_version == MLS10


def _unwrap_mlsmessage(data: bytes) -> bytes:
    """Return the KeyPackage inside an MLSMessage after checking its header."""
    version = int.from_bytes(data[0:2], "big")
    wire_format = int.from_bytes(data[2:4], "big")
    if version != MLS10:
        raise KeyPackageError(f"unsupported mlsmessage version {version!r}")
    if wire_format != WIRE_FORMAT_KEY_PACKAGE:
        raise KeyPackageError(
            f"mlsmessage wire_format {wire_format!r} is not mls_key_package (5)"
        )
    return data[4:]


def _decode_bare(data: bytes) -> KeyPackage:
    """Decode a bare KeyPackage (RFC 9420 section 10) that fills all of ``data``."""
    reader = _Reader(data)
    version = reader.uint(2, "version")
    cipher_suite = reader.uint(2, "cipher_suite")
    init_key = reader.vector("init_key")

    leaf_start = reader.pos
    encryption_key = reader.vector("encryption_key")
    signature_key = reader.vector("signature_key")
    credential_type = _read_credential(reader)
    _read_capabilities(reader)
    source = reader.uint(1, "leaf_node_source")
    not_before: int | None = None
    not_after: int | None = None
    if source == LeafNodeSource.KEY_PACKAGE:
        not_before = reader.uint(8, "lifetime not_before")
        not_after = reader.uint(8, "lifetime not_after")
    elif source == LeafNodeSource.COMMIT:
        reader.vector("parent_hash")
    elif source != LeafNodeSource.UPDATE:
        raise KeyPackageError(f"unknown leaf_node_source {source!r}")
    _read_extensions(reader, "leaf node extensions")
    leaf_tbs_end = reader.pos
    leaf_signature = reader.vector("leaf node signature")

    _read_extensions(reader, "keypackage extensions")
    keypackage_tbs_end = reader.pos
    signature = reader.vector("keypackage signature")
    reader.finish("keypackage")

    return KeyPackage(
        raw=data,
        version=version,
        cipher_suite=cipher_suite,
        init_key=init_key,
        encryption_key=encryption_key,
        signature_key=signature_key,
        not_before=not_before,
        not_after=not_after,
        leaf_node_source=source,
        credential_type=credential_type,
        leaf_node_tbs=data[leaf_start:leaf_tbs_end],
        leaf_node_signature=leaf_signature,
        keypackage_tbs=data[:keypackage_tbs_end],
        signature=signature,
    )


def _read_credential(reader: _Reader) -> int:
    """Read a Credential (RFC 9420 section 5.3) and return its type."""
    credential_type = reader.uint(2, "credential_type")
    if credential_type == CredentialType.BASIC:
        reader.vector("basic credential identity")
    elif credential_type == CredentialType.X509:
        certificates = reader.sub("x509 credential certificates")
        while not certificates.at_end():
            certificates.vector("x509 credential cert_data")
    else:
        raise KeyPackageError(f"unsupported credential type {credential_type!r}")
    return credential_type


def _read_capabilities(reader: _Reader) -> None:
    """Read Capabilities (RFC 9420 section 7.2): five vectors of uint16."""
    for what in ("versions", "cipher_suites", "extensions", "proposals", "credentials"):
        _read_uint16_list(reader, f"capabilities {what}")


def _read_uint16_list(reader: _Reader, what: str) -> None:
    """Read a ``<V>`` vector whose items are uint16 values."""
    body = reader.vector(what)
    if len(body) % 2:
        raise KeyPackageError(f"{what} length {len(body)} is not a multiple of 2")


def _read_extensions(reader: _Reader, what: str) -> None:
    """Read an ``Extension extensions<V>`` list (RFC 9420 section 7.2)."""
    extensions = reader.sub(what)
    seen: set[int] = set()
    while not extensions.at_end():
        extension_type = extensions.uint(2, f"{what} extension_type")
        extensions.vector(f"{what} extension_data")
        # A list naming one type twice is ambiguous: reject it.
        if extension_type in seen:
            raise KeyPackageError(
                f"duplicate extension type {extension_type!r} in {what}"
            )
        seen.add(extension_type)


def verify_keypackage(kp: KeyPackage, *, signature_key: bytes, now: int) -> None:
    """
    Check that a decoded KeyPackage may be stored for a session.

    The checks are those of RFC 9420 sections 7.3 and 10.1 that apply without
    a group, plus the contract's: version mls10, cipher suite 1 or 3, leaf
    source ``key_package``, X25519-sized ``init_key`` and ``encryption_key``
    that differ, leaf signature key equal to the session's key, lifetime
    ``not_before <= now <= not_after``, and both signatures (labels
    "LeafNodeTBS" and "KeyPackageTBS") valid under the leaf signature key.
    Uniqueness of ``init_key`` on the server is left to storage.

    Args:
        kp: the KeyPackage from :func:`decode_keypackage`.
        signature_key: the raw 32-byte Ed25519 public key of the uploading
            session's ID-Cert.
        now: the current time in seconds since the epoch.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``signature_key`` is not 32 bytes.
        KeyPackageError: a rule fails; the message names it.
    """
    if not isinstance(kp, KeyPackage):
        raise TypeError(f"kp must be a KeyPackage, not {type(kp).__name__}")
    if not isinstance(signature_key, bytes):
        raise TypeError(
            f"signature_key must be bytes, not {type(signature_key).__name__}"
        )
    if len(signature_key) != _ED25519_KEY_BYTES:
        raise ValueError(
            f"signature_key must be {_ED25519_KEY_BYTES} bytes, "
            f"got {len(signature_key)}"
        )
    if isinstance(now, bool) or not isinstance(now, int):
        raise TypeError(f"now must be an int, not {type(now).__name__}")

    _check_fields(kp, signature_key)
    _check_lifetime(kp, now)
    public_key = Ed25519PublicKey.from_public_bytes(signature_key)
    _verify_with_label(
        public_key,
        "leaf node",
        b"LeafNodeTBS",
        kp.leaf_node_tbs,
        kp.leaf_node_signature,
    )
    _verify_with_label(
        public_key,
        "keypackage",
        b"KeyPackageTBS",
        kp.keypackage_tbs,
        kp.signature,
    )


def _check_fields(kp: KeyPackage, signature_key: bytes) -> None:
    """Check version, suite, leaf source, key sizes and key relationships."""
    if kp.version != MLS10:
        raise KeyPackageError(f"unsupported protocol version {kp.version!r}")
    if kp.cipher_suite not in SUPPORTED_CIPHER_SUITES:
        raise KeyPackageError(f"unsupported cipher suite {kp.cipher_suite!r}")
    if kp.leaf_node_source != LeafNodeSource.KEY_PACKAGE:
        raise KeyPackageError(
            f"leaf_node_source {kp.leaf_node_source!r} is not key_package (1)"
        )
    for name, key in (("init_key", kp.init_key), ("encryption_key", kp.encryption_key)):
        if len(key) != _X25519_KEY_BYTES:
            raise KeyPackageError(
                f"{name} is {len(key)} bytes, not {_X25519_KEY_BYTES} "
                f"for cipher suite {kp.cipher_suite!r}"
            )
    if kp.signature_key != signature_key:
        raise KeyPackageError(
            f"leaf signature_key {kp.signature_key.hex()!r} is not the session key "
            f"{signature_key.hex()!r}"
        )
    if kp.init_key == kp.encryption_key:
        raise KeyPackageError("init_key equals the leaf encryption_key")


def _check_lifetime(kp: KeyPackage, now: int) -> None:
    """Check the leaf lifetime against ``now`` (RFC 9420 section 7.2)."""
    # _check_fields has established leaf_node_source is key_package.
    assert kp.not_before is not None and kp.not_after is not None
    if kp.not_before > kp.not_after:
        raise KeyPackageError(
            f"lifetime not_before {kp.not_before!r} is after not_after {kp.not_after!r}"
        )
    if now < kp.not_before:
        raise KeyPackageError(
            f"keypackage not valid before {kp.not_before!r} (now {now!r})"
        )
    if now > kp.not_after:
        raise KeyPackageError(f"keypackage expired at {kp.not_after!r} (now {now!r})")


def _verify_with_label(
    public_key: Ed25519PublicKey,
    what: str,
    label: bytes,
    content: bytes,
    signature: bytes,
) -> None:
    """Verify an RFC 9420 section 5.1.2 VerifyWithLabel Ed25519 signature."""
    full_label = _SIGN_LABEL_PREFIX + label
    sign_content = (
        _encode_varint(len(full_label))
        + full_label
        + _encode_varint(len(content))
        + content
    )
    try:
        public_key.verify(signature, sign_content)
    except InvalidSignature as exc:
        raise KeyPackageError(
            f"{what} signature does not verify (label {label.decode()!r})"
        ) from exc


def _encode_varint(value: int) -> bytes:
    """Encode a vector length in its shortest form (RFC 9420 section 2.1.2)."""
    # Inputs are bounded by MAX_KEYPACKAGE_BYTES, far below the 2**30 limit.
    assert 0 <= value < 1 << 30
    if value < 0x40:
        return value.to_bytes(1, "big")
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x8000_0000).to_bytes(4, "big")


def is_expired(kp: KeyPackage, now: int) -> bool:
    """
    Tell whether ``kp`` must no longer be handed out at time ``now``.

    A KeyPackage without a lifetime (leaf source other than ``key_package``)
    counts as expired: it could never have been verified.
    """
    return kp.not_after is None or now > kp.not_after
