"""Tests for server/keypackage.py: RFC 9420 KeyPackage decoding and validation."""

from __future__ import annotations

import contextlib
import random
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rfc9420 import DefaultCryptoProvider
from rfc9420.messages.key_packages import KeyPackage as RFC9420KeyPackage

from server.keypackage import (
    MAX_KEYPACKAGE_BYTES,
    KeyPackage,
    KeyPackageError,
    LeafNodeSource,
    decode_keypackage,
    is_expired,
    verify_keypackage,
)
from tests.mls_helpers import (
    capabilities,
    encode_keypackage,
    encode_vector,
    make_keypackage,
    wrap_in_mlsmessage,
    x509_credential,
    x25519_public_key,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "keypackages"

# tests/data/keypackages/*.hex were made by make_keypackage with this key and a
# lifetime of [VECTOR_NOT_BEFORE, VECTOR_NOT_AFTER].
VECTOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VECTOR_NOT_BEFORE = 1_700_000_000
VECTOR_NOT_AFTER = 2_000_000_000
VECTOR_NOW = 1_800_000_000


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def _now() -> int:
    return int(time.time())


def _check(data: bytes, key: Ed25519PrivateKey, now: int | None = None) -> KeyPackage:
    kp = decode_keypackage(data)
    verify_keypackage(
        kp, signature_key=_public(key), now=_now() if now is None else now
    )
    return kp


# --- valid KeyPackages --------------------------------------------------------------


@pytest.mark.parametrize("cipher_suite", [1, 3])
@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "mlsmessage"])
def test_keypackage_from_rfc9420_decodes_and_verifies(
    key: Ed25519PrivateKey, cipher_suite: int, wrap: bool
) -> None:
    init_key, encryption_key = x25519_public_key(), x25519_public_key()
    data = make_keypackage(
        key,
        cipher_suite=cipher_suite,
        not_before=1_000,
        not_after=4_000_000_000,
        init_key=init_key,
        encryption_key=encryption_key,
        wrap=wrap,
    )

    kp = _check(data, key)

    assert kp.version == 1
    assert kp.cipher_suite == cipher_suite
    assert kp.init_key == init_key
    assert kp.encryption_key == encryption_key
    assert kp.signature_key == _public(key)
    assert (kp.not_before, kp.not_after) == (1_000, 4_000_000_000)
    assert kp.leaf_node_source == LeafNodeSource.KEY_PACKAGE
    assert kp.credential_type == 1
    assert kp.raw == (data[4:] if wrap else data)


def test_keypackage_from_mlsmessage_keeps_bare_bytes(key: Ed25519PrivateKey) -> None:
    bare = make_keypackage(key)

    kp = decode_keypackage(wrap_in_mlsmessage(bare))

    assert kp.raw == bare
    assert kp == decode_keypackage(bare)


@pytest.mark.parametrize(
    ("name", "cipher_suite"),
    [("rfc9420_suite1.hex", 1), ("rfc9420_suite3_mlsmessage.hex", 3)],
)
def test_keypackage_stored_vector_decodes_and_verifies(
    name: str, cipher_suite: int
) -> None:
    data = bytes.fromhex((DATA / name).read_text())

    kp = _check(data, VECTOR_KEY, now=VECTOR_NOW)

    assert kp.cipher_suite == cipher_suite
    assert (kp.not_before, kp.not_after) == (VECTOR_NOT_BEFORE, VECTOR_NOT_AFTER)


def test_keypackage_helpers_output_verifies_with_rfc9420(
    key: Ed25519PrivateKey,
) -> None:
    # Both helpers must produce KeyPackages that the independent library accepts.
    for data in (make_keypackage(key, cipher_suite=3), encode_keypackage(key)):
        kp = decode_keypackage(data)
        theirs = RFC9420KeyPackage.deserialize(data)
        theirs.verify(DefaultCryptoProvider(kp.cipher_suite), current_time=_now())


def test_keypackage_with_x509_credential_verifies(key: Ed25519PrivateKey) -> None:
    data = encode_keypackage(key, credential=x509_credential([b"\x30\x00", b"der"]))

    assert _check(data, key).credential_type == 2


def test_keypackage_with_extensions_verifies(key: Ed25519PrivateKey) -> None:
    data = encode_keypackage(
        key, leaf_extensions=[(0x0A0A, b"")], extensions=[(0x1A1A, b"x" * 100)]
    )

    _check(data, key)


@pytest.mark.parametrize("offset", [0, 1])
def test_keypackage_lifetime_bounds_are_inclusive(
    key: Ed25519PrivateKey, offset: int
) -> None:
    data = make_keypackage(key, not_before=5_000, not_after=5_001)

    _check(data, key, now=5_000 + offset)


# --- decoding errors -----------------------------------------------------------------


def test_decode_keypackage_rejects_every_truncation(key: Ed25519PrivateKey) -> None:
    for data in (make_keypackage(key), make_keypackage(key, wrap=True)):
        for end in range(len(data)):
            with pytest.raises(KeyPackageError, match="^truncated "):
                decode_keypackage(data[:end])


@pytest.mark.parametrize(
    ("end", "message"),
    [
        (0, "truncated version"),
        (3, "truncated cipher_suite"),
        (4, "truncated init_key"),
        (20, "truncated init_key: need 32 bytes at offset 5, have 15"),
        (37, "truncated encryption_key"),
        (-65, "truncated keypackage signature"),
        (-1, "truncated keypackage signature: need 64 bytes"),
    ],
)
def test_decode_keypackage_rejects_truncated_input(
    key: Ed25519PrivateKey, end: int, message: str
) -> None:
    data = make_keypackage(key)

    with pytest.raises(KeyPackageError, match=message):
        decode_keypackage(data[:end])


def test_decode_keypackage_rejects_length_past_end(key: Ed25519PrivateKey) -> None:
    data = make_keypackage(key)
    assert data[-66:-64] == b"\x40\x40"  # signature<V>, 64 bytes
    longer = data[:-66] + b"\x40\x41" + data[-64:]

    with pytest.raises(KeyPackageError, match="need 65 bytes at offset .*, have 64"):
        decode_keypackage(longer)
    with pytest.raises(KeyPackageError, match="truncated init_key: need 63 bytes"):
        decode_keypackage(b"\x00\x01\x00\x01\x3f")


def test_decode_keypackage_rejects_inner_length_past_vector(
    key: Ed25519PrivateKey,
) -> None:
    credential = (2).to_bytes(2, "big") + encode_vector(b"\x05abc")
    data = encode_keypackage(key, credential=credential)

    with pytest.raises(
        KeyPackageError,
        match="^truncated x509 credential cert_data: need 5 bytes at offset 107",
    ):
        decode_keypackage(data)


@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "mlsmessage"])
def test_decode_keypackage_rejects_trailing_bytes(
    key: Ed25519PrivateKey, wrap: bool
) -> None:
    data = make_keypackage(key, wrap=wrap)

    with pytest.raises(KeyPackageError, match="^1 trailing bytes after keypackage"):
        decode_keypackage(data + b"\x00")
    with pytest.raises(KeyPackageError, match="^64 trailing bytes"):
        decode_keypackage(data + data[-64:])


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (b"\x40\x20", "non-minimal length 32 in init_key"),
        (b"\x80\x00\x00\x20", "non-minimal length 32 in init_key"),
        (b"\x80\x00\x3f\xff", "non-minimal length 16383 in init_key"),
        (b"\xc0", "invalid length prefix 0b11 in init_key at offset 4"),
    ],
)
def test_decode_keypackage_rejects_bad_length_encoding(
    key: Ed25519PrivateKey, length: bytes, message: str
) -> None:
    data = make_keypackage(key)
    assert data[4] == 32

    with pytest.raises(KeyPackageError, match=message):
        decode_keypackage(data[:4] + length + data[5:])


def test_decode_keypackage_rejects_oversized_input() -> None:
    with pytest.raises(KeyPackageError, match="65537 bytes, more than 65536"):
        decode_keypackage(bytes(MAX_KEYPACKAGE_BYTES + 1))


@pytest.mark.parametrize("wire_format", [0x0001, 0x0002, 0x0003, 0x0004])
def test_decode_keypackage_rejects_other_wire_format(
    key: Ed25519PrivateKey, wire_format: int
) -> None:
    data = wrap_in_mlsmessage(make_keypackage(key), wire_format=wire_format)

    with pytest.raises(
        KeyPackageError,
        match=f"mlsmessage wire_format {wire_format} is not mls_key_package",
    ):
        decode_keypackage(data)


def test_decode_keypackage_rejects_other_mlsmessage_version(
    key: Ed25519PrivateKey,
) -> None:
    data = wrap_in_mlsmessage(make_keypackage(key), version=2)

    with pytest.raises(KeyPackageError, match="unsupported mlsmessage version 2"):
        decode_keypackage(data)


def test_decode_keypackage_rejects_unknown_credential_type(
    key: Ed25519PrivateKey,
) -> None:
    credential = (3).to_bytes(2, "big") + encode_vector(b"whatever")
    data = encode_keypackage(key, credential=credential)

    with pytest.raises(KeyPackageError, match="unsupported credential type 3"):
        decode_keypackage(data)


def test_decode_keypackage_rejects_unknown_leaf_node_source(
    key: Ed25519PrivateKey,
) -> None:
    data = encode_keypackage(key, leaf_node_source=7)

    with pytest.raises(KeyPackageError, match="unknown leaf_node_source 7"):
        decode_keypackage(data)


@pytest.mark.parametrize("where", ["leaf_extensions", "extensions"])
def test_decode_keypackage_rejects_duplicate_extension(
    key: Ed25519PrivateKey, where: str
) -> None:
    items = [(0x0A0A, b"a"), (0x0A0A, b"b")]
    data = encode_keypackage(key, **{where: items})  # type: ignore[arg-type]

    with pytest.raises(KeyPackageError, match="duplicate extension type 2570"):
        decode_keypackage(data)


def test_decode_keypackage_rejects_odd_capabilities_vector(
    key: Ed25519PrivateKey,
) -> None:
    caps = capabilities()
    assert caps[3:6] == encode_vector(b"\x00\x01")  # after versions<V>
    bad = caps[:3] + encode_vector(b"\x00\x01\x00") + caps[6:]
    data = encode_keypackage(key, leaf_capabilities=bad)

    with pytest.raises(
        KeyPackageError,
        match="capabilities cipher_suites length 3 is not a multiple of 2",
    ):
        decode_keypackage(data)


def test_decode_keypackage_rejects_non_bytes() -> None:
    with pytest.raises(TypeError, match="data must be bytes, not str"):
        decode_keypackage("00010001")  # type: ignore[arg-type]


# --- verification errors --------------------------------------------------------------


def test_verify_keypackage_rejects_flipped_keypackage_signature(
    key: Ed25519PrivateKey,
) -> None:
    data = bytearray(make_keypackage(key))
    data[-1] ^= 0x01

    with pytest.raises(KeyPackageError, match="^keypackage signature does not verify"):
        _check(bytes(data), key)


def test_verify_keypackage_rejects_keypackage_signed_by_other_key(
    key: Ed25519PrivateKey,
) -> None:
    other = Ed25519PrivateKey.generate()
    good = decode_keypackage(encode_keypackage(key))
    forged = encode_keypackage(key, signature=other.sign(good.keypackage_tbs))

    with pytest.raises(KeyPackageError, match="^keypackage signature does not verify"):
        _check(forged, key)


def test_verify_keypackage_rejects_flipped_leaf_signature(
    key: Ed25519PrivateKey,
) -> None:
    kp = decode_keypackage(make_keypackage(key))
    start = kp.raw.index(kp.leaf_node_signature)
    data = bytearray(kp.raw)
    data[start + 10] ^= 0x80

    with pytest.raises(KeyPackageError, match="^leaf node signature does not verify"):
        _check(bytes(data), key)


def test_verify_keypackage_rejects_bad_leaf_signature_under_good_keypackage_signature(
    key: Ed25519PrivateKey,
) -> None:
    # The KeyPackage signature is valid over a leaf whose own signature is not.
    data = encode_keypackage(key, leaf_signature=bytes(64))
    kp = decode_keypackage(data)

    with pytest.raises(KeyPackageError, match="^leaf node signature does not verify"):
        verify_keypackage(kp, signature_key=_public(key), now=_now())


def test_verify_keypackage_rejects_other_session_key(key: Ed25519PrivateKey) -> None:
    session_key = Ed25519PrivateKey.generate()
    kp = decode_keypackage(make_keypackage(key))

    with pytest.raises(KeyPackageError, match="is not the session key"):
        verify_keypackage(kp, signature_key=_public(session_key), now=_now())


def test_verify_keypackage_rejects_leaf_key_not_matching_signer(
    key: Ed25519PrivateKey,
) -> None:
    # Leaf claims the session key but was signed by someone else.
    session_key = Ed25519PrivateKey.generate()
    data = encode_keypackage(key, signature_key=_public(session_key))

    with pytest.raises(KeyPackageError, match="^leaf node signature does not verify"):
        _check(data, session_key)


def test_verify_keypackage_rejects_init_key_equal_to_encryption_key(
    key: Ed25519PrivateKey,
) -> None:
    shared = x25519_public_key()
    data = make_keypackage(key, init_key=shared, encryption_key=shared)

    with pytest.raises(
        KeyPackageError, match="init_key equals the leaf encryption_key"
    ):
        _check(data, key)


def test_verify_keypackage_rejects_expired_lifetime(key: Ed25519PrivateKey) -> None:
    now = _now()
    data = make_keypackage(key, not_before=now - 100, not_after=now - 1)

    with pytest.raises(KeyPackageError, match=f"expired at {now - 1} \\(now {now}\\)"):
        _check(data, key, now=now)


def test_verify_keypackage_rejects_not_yet_valid_lifetime(
    key: Ed25519PrivateKey,
) -> None:
    now = _now()
    data = make_keypackage(key, not_before=now + 1, not_after=now + 100)

    with pytest.raises(KeyPackageError, match=f"not valid before {now + 1}"):
        _check(data, key, now=now)


def test_verify_keypackage_rejects_inverted_lifetime(key: Ed25519PrivateKey) -> None:
    data = make_keypackage(key, not_before=300, not_after=200)

    with pytest.raises(KeyPackageError, match="not_before 300 is after not_after 200"):
        _check(data, key, now=250)


def test_verify_keypackage_rejects_unsupported_cipher_suite(
    key: Ed25519PrivateKey,
) -> None:
    data = make_keypackage(key, cipher_suite=2)

    with pytest.raises(KeyPackageError, match="^unsupported cipher suite 2$"):
        _check(data, key)


@pytest.mark.parametrize("cipher_suite", [0, 4, 7, 0x0A0A, 0xFFFF])
def test_verify_keypackage_rejects_other_cipher_suites(
    key: Ed25519PrivateKey, cipher_suite: int
) -> None:
    data = encode_keypackage(key, cipher_suite=cipher_suite)

    with pytest.raises(
        KeyPackageError, match=f"unsupported cipher suite {cipher_suite}"
    ):
        _check(data, key)


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_verify_keypackage_rejects_wrong_version(
    key: Ed25519PrivateKey, version: int
) -> None:
    data = make_keypackage(key, version=version)

    with pytest.raises(
        KeyPackageError, match=f"unsupported protocol version {version}"
    ):
        _check(data, key)


@pytest.mark.parametrize("source", [LeafNodeSource.UPDATE, LeafNodeSource.COMMIT])
def test_verify_keypackage_rejects_leaf_not_from_key_package(
    key: Ed25519PrivateKey, source: LeafNodeSource
) -> None:
    data = encode_keypackage(key, leaf_node_source=source, parent_hash=b"h" * 32)
    kp = decode_keypackage(data)
    assert (kp.not_before, kp.not_after) == (None, None)

    with pytest.raises(KeyPackageError, match=f"leaf_node_source {int(source)} is not"):
        verify_keypackage(kp, signature_key=_public(key), now=_now())


@pytest.mark.parametrize(
    ("field", "size"),
    [("init_key", 31), ("init_key", 0), ("encryption_key", 33)],
)
def test_verify_keypackage_rejects_wrong_hpke_key_size(
    key: Ed25519PrivateKey, field: str, size: int
) -> None:
    data = encode_keypackage(key, **{field: b"k" * size})  # type: ignore[arg-type]

    with pytest.raises(KeyPackageError, match=f"^{field} is {size} bytes, not 32"):
        _check(data, key)


def test_verify_keypackage_rejects_bad_arguments(key: Ed25519PrivateKey) -> None:
    kp = decode_keypackage(make_keypackage(key))

    with pytest.raises(ValueError, match="signature_key must be 32 bytes, got 31"):
        verify_keypackage(kp, signature_key=_public(key)[:31], now=_now())
    with pytest.raises(TypeError, match="signature_key must be bytes"):
        verify_keypackage(
            kp,
            signature_key=bytearray(_public(key)),  # type: ignore[arg-type]
            now=_now(),
        )
    with pytest.raises(TypeError, match="now must be an int, not float"):
        verify_keypackage(kp, signature_key=_public(key), now=1.5)  # type: ignore[arg-type]


def test_keypackage_error_is_value_error() -> None:
    assert issubclass(KeyPackageError, ValueError)


# --- is_expired ------------------------------------------------------------------


def test_is_expired_compares_not_after(key: Ed25519PrivateKey) -> None:
    kp = decode_keypackage(make_keypackage(key, not_before=10, not_after=20))

    assert not is_expired(kp, 5)
    assert not is_expired(kp, 20)
    assert is_expired(kp, 21)


def test_is_expired_treats_missing_lifetime_as_expired(
    key: Ed25519PrivateKey,
) -> None:
    kp = decode_keypackage(encode_keypackage(key, leaf_node_source=2))

    assert is_expired(kp, 0)


# --- fuzzing -----------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """Apply one random mutation to ``data``."""
    if not data:
        return rng.randbytes(rng.randrange(1, 9))
    buf = bytearray(data)
    position = rng.randrange(len(buf))
    kind = rng.randrange(7)
    if kind == 0:
        buf[position] ^= 1 << rng.randrange(8)
    elif kind == 1:
        buf[position] = rng.randrange(256)
    elif kind == 2:
        buf[position:position] = rng.randbytes(rng.randrange(1, 9))
    elif kind == 3:
        del buf[position : position + rng.randrange(1, 9)]
    elif kind == 4:
        del buf[position:]
    elif kind == 5:
        # Large or malformed varint headers: 0x3f, 0x7f.., 0xbf.., 0xff.
        buf[position] = rng.choice([0x3F, 0x40, 0x7F, 0x80, 0xBF, 0xC0, 0xFF])
    else:
        span = data[position : position + rng.randrange(1, 33)]
        buf[position:position] = span
    return bytes(buf)


def test_decode_keypackage_fuzzed_input_raises_only_keypackage_error(
    key: Ed25519PrivateKey,
) -> None:
    rng = random.Random(9420)
    bare = make_keypackage(key)
    seeds = [bare, wrap_in_mlsmessage(bare)]
    rejected = 0
    for i in range(2000):
        data = _mutate(rng, seeds[i % 2])
        if rng.random() < 0.2:
            data = _mutate(rng, data)
        # Dropping or adding the MLSMessage header leaves the same KeyPackage.
        if data in seeds:
            continue
        # Any other change is caught by decoding or by a signature.
        with pytest.raises(KeyPackageError):
            _check(data, key)
        rejected += 1
    assert rejected > 1900


def test_decode_keypackage_random_bytes_raise_only_keypackage_error() -> None:
    rng = random.Random(2024)
    prefixes = [b"", b"\x00\x01\x00\x01", b"\x00\x01\x00\x05\x00\x01\x00\x01"]
    for i in range(1500):
        data = prefixes[i % 3] + rng.randbytes(rng.randrange(0, 300))
        with contextlib.suppress(KeyPackageError):
            decode_keypackage(data)
