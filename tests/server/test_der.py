"""Tests for server/der.py: the DER reader and writer."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from typing import Any

import pytest

from server import der
from server.der import DERError


def _tlv(hex_text: str) -> der.Element:
    return der.read(bytes.fromhex(hex_text))


# --- TLV framing -------------------------------------------------------------------


def test_read_returns_tag_value_and_exact_encoding() -> None:
    element = _tlv("300602010102017f")

    assert element.tag == der.SEQUENCE
    assert element.is_constructed
    assert element.encoded == bytes.fromhex("300602010102017f")
    assert [child.encoded.hex() for child in element.children()] == [
        "020101",
        "02017f",
    ]


def test_read_accepts_long_form_length() -> None:
    data = der.encode_octet_string(b"x" * 300)

    element = der.read(data)

    assert data[:4] == bytes.fromhex("0482012c")
    assert element.value == b"x" * 300


@pytest.mark.parametrize(
    ("hex_text", "match"),
    [
        ("", "truncated identifier"),
        ("30", "truncated length"),
        ("3004020101", "runs past the end"),
        ("02010100", "1 trailing bytes"),
        ("30800201010000", "indefinite length"),
        ("04817f" + "00" * 127, "not minimally encoded"),
        ("0482000100", "not minimally encoded"),
        ("0485" + "00" * 5, "too long"),
        ("048201", "truncated length"),
        ("1f0100", "multi-octet tag"),
    ],
)
def test_read_rejects_bad_framing(hex_text: str, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.read(bytes.fromhex(hex_text))


def test_read_rejects_non_bytes() -> None:
    with pytest.raises(DERError, match="expected bytes, got str"):
        der.read("3000")  # type: ignore[arg-type]


def test_element_children_rejects_primitive() -> None:
    with pytest.raises(DERError, match="integer is not constructed"):
        _tlv("020101").children()


def test_element_expect_rejects_other_tag() -> None:
    with pytest.raises(DERError, match="expected sequence, found integer"):
        _tlv("020101").expect(der.SEQUENCE)


def test_read_all_reads_concatenation() -> None:
    elements = der.read_all(bytes.fromhex("0101ff0500"))

    assert [element.tag for element in elements] == [der.BOOLEAN, der.NULL]


def test_context_tag_builds_identifiers() -> None:
    assert der.context_tag(0) == 0xA0
    assert der.context_tag(3) == 0xA3
    assert der.context_tag(1, constructed=False) == 0x81


def test_context_tag_rejects_large_numbers() -> None:
    with pytest.raises(DERError, match="context tag number 31"):
        der.context_tag(31)


# --- INTEGER -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "hex_text"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (255, "020200ff"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
    ],
)
def test_integer_round_trips_minimal(value: int, hex_text: str) -> None:
    assert der.encode_integer(value).hex() == hex_text
    assert der.decode_integer(_tlv(hex_text)) == value


def test_integer_round_trips_large_serial() -> None:
    value = 2**159 - 1

    encoded = der.encode_integer(value)

    assert len(encoded) == 22
    assert der.decode_integer(der.read(encoded)) == value


@pytest.mark.parametrize(
    ("hex_text", "match"),
    [
        ("0200", "no contents"),
        ("02020001", "not minimally encoded"),
        ("0202ffff", "not minimally encoded"),
        ("0203010000", "longer than 2"),
        ("0101ff", "expected integer, found boolean"),
    ],
)
def test_decode_integer_rejects_bad_input(hex_text: str, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.decode_integer(_tlv(hex_text), max_octets=2)


@pytest.mark.parametrize(
    ("hex_text", "value"),
    [
        ("020100", 0),
        ("02020000", 0),
        ("02080000000000000000", 0),
        ("02080000000000000001", 1),
        ("0208ffffffffffffffff", 2**64 - 1),
    ],
)
def test_decode_unsigned_accepts_non_minimal(hex_text: str, value: int) -> None:
    assert der.decode_unsigned(_tlv(hex_text)) == value


def test_decode_unsigned_rejects_overlong() -> None:
    with pytest.raises(DERError, match="10 octets is longer than 9"):
        der.decode_unsigned(_tlv("020a" + "00" * 10))


# --- BOOLEAN, NULL -----------------------------------------------------------------


def test_boolean_round_trips() -> None:
    assert der.encode_boolean(True).hex() == "0101ff"
    assert der.encode_boolean(False).hex() == "010100"
    assert der.decode_boolean(_tlv("0101ff")) is True
    assert der.decode_boolean(_tlv("010100")) is False


@pytest.mark.parametrize("hex_text", ["010101", "0102ffff", "0100"])
def test_decode_boolean_rejects_non_der_values(hex_text: str) -> None:
    with pytest.raises(DERError, match="boolean contents"):
        der.decode_boolean(_tlv(hex_text))


def test_null_round_trips() -> None:
    assert der.encode_null().hex() == "0500"
    der.decode_null(_tlv("0500"))


def test_decode_null_rejects_contents() -> None:
    with pytest.raises(DERError, match="null has contents"):
        der.decode_null(_tlv("050100"))


# --- OBJECT IDENTIFIER -------------------------------------------------------------


@pytest.mark.parametrize(
    ("dotted", "hex_text"),
    [
        ("2.5.4.3", "0603550403"),
        ("1.3.101.112", "06032b6570"),
        ("0.9.2342.19200300.100.1.44", "060a0992268993f22c64012c"),
        ("1.2.840.113549.1.9.14", "06092a864886f70d01090e"),
        ("2.999.3", "0603883703"),
    ],
)
def test_oid_round_trips(dotted: str, hex_text: str) -> None:
    assert der.encode_oid(dotted).hex() == hex_text
    assert der.decode_oid(_tlv(hex_text)) == dotted


@pytest.mark.parametrize(
    ("hex_text", "match"),
    [
        ("0600", "no contents"),
        ("060155" + "81", "trailing bytes"),
        ("06025581", "ends inside an arc"),
        ("0603558001", "not minimally encoded"),
        ("0615" + "ff" * 20 + "01", "arc is too long"),
    ],
)
def test_decode_oid_rejects_bad_input(hex_text: str, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.decode_oid(_tlv(hex_text))


@pytest.mark.parametrize(
    ("dotted", "match"),
    [
        ("1", "not a dotted object identifier"),
        ("a.b", "not a dotted object identifier"),
        ("1..2", "not a dotted object identifier"),
        ("3.1", "invalid first or second arc"),
        ("1.40", "invalid first or second arc"),
    ],
)
def test_encode_oid_rejects_bad_input(dotted: str, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.encode_oid(dotted)


# --- BIT STRING, OCTET STRING --------------------------------------------------------


def test_bit_string_round_trips() -> None:
    assert der.encode_bit_string(b"\x80", 7).hex() == "03020780"
    assert der.decode_bit_string(_tlv("03020780")) == (b"\x80", 7)
    assert der.decode_bit_string(_tlv("030100")) == (b"", 0)


def test_decode_bit_string_lenient_ignores_wrong_unused_count() -> None:
    # polyproto-rs writes keyCertSign (0x04) with an unused-bits count of 5.
    element = _tlv("03020504")

    assert der.decode_bit_string(element, strict=False) == (b"\x04", 5)
    with pytest.raises(DERError, match="set bits in its unused bits"):
        der.decode_bit_string(element)


@pytest.mark.parametrize(
    ("hex_text", "match"),
    [
        ("0300", "no unused-bits octet"),
        ("03020880", "above 7"),
        ("030103", "empty bit string has a non-zero"),
    ],
)
def test_decode_bit_string_rejects_bad_input(hex_text: str, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.decode_bit_string(_tlv(hex_text), strict=False)


@pytest.mark.parametrize(("data", "unused"), [(b"\x80", 8), (b"", 1), (b"\x00", -1)])
def test_encode_bit_string_rejects_bad_count(data: bytes, unused: int) -> None:
    with pytest.raises(DERError, match="invalid unused-bits count"):
        der.encode_bit_string(data, unused)


def test_octet_string_round_trips() -> None:
    assert der.decode_octet_string(der.read(der.encode_octet_string(b"ab"))) == b"ab"


# --- strings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "raw", "text"),
    [
        (der.UTF8_STRING, "alice ü".encode(), "alice ü"),
        (der.PRINTABLE_STRING, b"alice@example.com", "alice@example.com"),
        (der.IA5_STRING, b"sess1", "sess1"),
        (der.VISIBLE_STRING, b"sess1", "sess1"),
        (der.T61_STRING, b"caf\xe9", "café"),
        (der.BMP_STRING, "bob".encode("utf-16-be"), "bob"),
        (der.UNIVERSAL_STRING, "bob".encode("utf-32-be"), "bob"),
    ],
)
def test_decode_string_reads_string_types(tag: int, raw: bytes, text: str) -> None:
    assert der.decode_string(der.read(der.encode_tlv(tag, raw))) == text


@pytest.mark.parametrize(
    ("tag", "raw", "match"),
    [
        (der.UTF8_STRING, b"\xff", "not valid utf-8"),
        (der.IA5_STRING, b"\xe9", "not valid ascii"),
        (der.BMP_STRING, b"\x00", "not valid utf-16-be"),
        (der.OCTET_STRING, b"abc", "expected a string, found octet string"),
    ],
)
def test_decode_string_rejects_bad_input(tag: int, raw: bytes, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.decode_string(der.read(der.encode_tlv(tag, raw)))


def test_string_writers_encode_tags() -> None:
    assert der.encode_utf8_string("é").hex() == "0c02c3a9"
    assert der.encode_ia5_string("ab").hex() == "16026162"
    assert der.encode_printable_string("ab").hex() == "13026162"


@pytest.mark.parametrize("writer", [der.encode_ia5_string, der.encode_printable_string])
def test_ascii_string_writers_reject_non_ascii(writer: Callable[[str], bytes]) -> None:
    with pytest.raises(DERError, match="'é' is not"):
        writer("é")


# --- SEQUENCE, SET -----------------------------------------------------------------


def test_encode_set_sorts_elements() -> None:
    assert der.encode_set(b"\x02\x01\x02", b"\x02\x01\x01").hex() == "3106020101020102"


def test_encode_sequence_keeps_order() -> None:
    assert der.encode_sequence(b"\x02\x01\x02", b"\x02\x01\x01").hex() == (
        "3006020102020101"
    )


def test_encode_explicit_wraps_inner() -> None:
    assert der.encode_explicit(0, der.encode_integer(2)).hex() == "a003020102"


# --- time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "hex_prefix", "text"),
    [
        (0, "170d", "700101000000Z"),
        (1_700_000_000, "170d", "231114221320Z"),
        (-631_152_000, "170d", "500101000000Z"),
        (2_524_607_999, "170d", "491231235959Z"),
        (2_524_608_000, "180f", "20500101000000Z"),
        (253_402_300_799, "180f", "99991231235959Z"),
        (-631_152_001, "180f", "19491231235959Z"),
    ],
)
def test_time_round_trips(seconds: int, hex_prefix: str, text: str) -> None:
    encoded = der.encode_time(seconds)

    assert encoded.hex().startswith(hex_prefix)
    assert encoded[2:].decode() == text
    assert der.decode_time(der.read(encoded)) == seconds


@pytest.mark.parametrize(
    ("tag", "text", "match"),
    [
        (der.UTC_TIME, "2311142213Z", "not in the form YYMMDDHHMMSSZ"),
        (der.UTC_TIME, "231114221320", "not in the form"),
        (der.UTC_TIME, "231114221320+0100", "not in the form"),
        (der.GENERALIZED_TIME, "20231114221320.5Z", "not in the form YYYYMMDD"),
        (der.GENERALIZED_TIME, "20230230000000Z", "not a valid date"),
        (der.UTC_TIME, "231314221320Z", "not a valid date"),
        (der.UTC_TIME, "2311142213-1Z", "not in the form"),
    ],
)
def test_decode_time_rejects_bad_input(tag: int, text: str, match: str) -> None:
    with pytest.raises(DERError, match=match):
        der.decode_time(der.read(der.encode_tlv(tag, text.encode())))


def test_decode_time_rejects_other_tags() -> None:
    with pytest.raises(DERError, match="expected a time, found integer"):
        der.decode_time(_tlv("020101"))


def test_decode_time_rejects_non_ascii() -> None:
    with pytest.raises(DERError, match="time is not ascii"):
        der.decode_time(der.read(der.encode_tlv(der.UTC_TIME, b"\xff" * 13)))


@pytest.mark.parametrize("seconds", [253_402_300_800, 10**20])
def test_encode_time_rejects_out_of_range(seconds: int) -> None:
    with pytest.raises(DERError, match="cannot be encoded"):
        der.encode_time(seconds)


# --- robustness --------------------------------------------------------------------


def _walk(element: der.Element) -> None:
    """Decode every element with every decoder, as a hostile input would."""
    decoders: tuple[Callable[[der.Element], Any], ...] = (
        der.decode_boolean,
        der.decode_integer,
        der.decode_unsigned,
        der.decode_null,
        der.decode_oid,
        der.decode_bit_string,
        der.decode_octet_string,
        der.decode_string,
        der.decode_time,
    )
    for decoder in decoders:
        with contextlib.suppress(DERError):
            decoder(element)
    if element.is_constructed:
        try:
            children = element.children()
        except DERError:
            return
        for child in children:
            _walk(child)


def test_reader_fuzz_raises_only_der_error() -> None:
    rng = random.Random(20240601)
    seed = der.encode_sequence(
        der.encode_explicit(0, der.encode_integer(2)),
        der.encode_integer(2**100),
        der.encode_sequence(der.encode_oid("1.3.101.112"), der.encode_null()),
        der.encode_set(der.encode_ia5_string("example"), der.encode_utf8_string("é")),
        der.encode_sequence(der.encode_time(0), der.encode_time(2_524_608_000)),
        der.encode_bit_string(b"\x80", 7),
        der.encode_tlv(der.T61_STRING, b"caf\xe9"),
        der.encode_tlv(der.BMP_STRING, "x".encode("utf-16-be")),
        der.encode_octet_string(der.encode_sequence(der.encode_boolean(True))),
    )
    for _ in range(2000):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(len(data))
            data[position] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[: rng.randrange(len(data))]
        if rng.random() < 0.2:
            data = bytearray(rng.randbytes(rng.randrange(64)))
        try:
            elements = der.read_all(bytes(data))
        except DERError:
            continue
        for element in elements:
            _walk(element)
