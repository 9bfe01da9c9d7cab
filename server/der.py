"""
A small DER reader and writer for the X.509 structures of polyproto ID-Certs.

Implements the subset of ITU-T X.690 (BER/DER) that certificates and PKCS #10
requests use: single-octet identifiers, definite minimal lengths, INTEGER,
BOOLEAN, NULL, OBJECT IDENTIFIER, BIT STRING, OCTET STRING, the common string
types, UTCTime/GeneralizedTime (RFC 5280 section 4.1.2.5), SEQUENCE/SET and
context-specific tags.

The reader works on bytes and never raises anything but :class:`DERError`. It is
strict by default; the few lenient switches (non-minimal INTEGERs, ignored
unused-bit counts) exist for inputs made by the polyproto-rs library and are
chosen by the caller. The writer always produces minimal DER.
"""

from __future__ import annotations

import calendar
import datetime
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BIT_STRING",
    "BMP_STRING",
    "BOOLEAN",
    "GENERALIZED_TIME",
    "IA5_STRING",
    "INTEGER",
    "NULL",
    "OCTET_STRING",
    "OID",
    "PRINTABLE_STRING",
    "SEQUENCE",
    "SET",
    "STRING_TAGS",
    "T61_STRING",
    "UNIVERSAL_STRING",
    "UTC_TIME",
    "UTF8_STRING",
    "VISIBLE_STRING",
    "DERError",
    "Element",
    "context_tag",
    "decode_bit_string",
    "decode_boolean",
    "decode_integer",
    "decode_null",
    "decode_octet_string",
    "decode_oid",
    "decode_string",
    "decode_time",
    "decode_unsigned",
    "encode_bit_string",
    "encode_boolean",
    "encode_explicit",
    "encode_ia5_string",
    "encode_integer",
    "encode_null",
    "encode_octet_string",
    "encode_oid",
    "encode_printable_string",
    "encode_sequence",
    "encode_set",
    "encode_time",
    "encode_tlv",
    "encode_utf8_string",
    "read",
    "read_all",
]

BOOLEAN: Final = 0x01
INTEGER: Final = 0x02
BIT_STRING: Final = 0x03
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OID: Final = 0x06
UTF8_STRING: Final = 0x0C
PRINTABLE_STRING: Final = 0x13
T61_STRING: Final = 0x14
IA5_STRING: Final = 0x16
UTC_TIME: Final = 0x17
GENERALIZED_TIME: Final = 0x18
VISIBLE_STRING: Final = 0x1A
UNIVERSAL_STRING: Final = 0x1C
BMP_STRING: Final = 0x1E
SEQUENCE: Final = 0x30
SET: Final = 0x31

# How each string type's contents are decoded. T61String has no faithful codec;
# common tools put Latin-1 in it, so it is read as Latin-1.
_STRING_CODECS: Final[dict[int, str]] = {
    UTF8_STRING: "utf-8",
    PRINTABLE_STRING: "ascii",
    T61_STRING: "latin-1",
    IA5_STRING: "ascii",
    VISIBLE_STRING: "ascii",
    UNIVERSAL_STRING: "utf-32-be",
    BMP_STRING: "utf-16-be",
}
STRING_TAGS: Final = frozenset(_STRING_CODECS)

# Lengths past 4 GiB cannot occur in anything this server reads.
_MAX_LENGTH_OCTETS: Final = 4
# One OID arc is at most this many base-128 digits (covers 128-bit UUID arcs).
_MAX_ARC_OCTETS: Final = 20

_TAG_NAMES: Final[dict[int, str]] = {
    BOOLEAN: "boolean",
    INTEGER: "integer",
    BIT_STRING: "bit string",
    OCTET_STRING: "octet string",
    NULL: "null",
    OID: "object identifier",
    UTF8_STRING: "utf8string",
    PRINTABLE_STRING: "printablestring",
    T61_STRING: "t61string",
    IA5_STRING: "ia5string",
    UTC_TIME: "utctime",
    GENERALIZED_TIME: "generalizedtime",
    VISIBLE_STRING: "visiblestring",
    UNIVERSAL_STRING: "universalstring",
    BMP_STRING: "bmpstring",
    SEQUENCE: "sequence",
    SET: "set",
}


class DERError(ValueError):
    """The bytes are not the DER (or tolerated BER) encoding that was expected."""


def context_tag(number: int, *, constructed: bool = True) -> int:
    """
    Return the identifier octet of a context-specific tag ``[number]``.

    Raises:
        DERError: ``number`` does not fit a single identifier octet.
    """
    if not 0 <= number <= 30:
        raise DERError(f"context tag number {number!r} is out of range 0..30")
    return (0xA0 if constructed else 0x80) | number


def _tag_name(tag: int) -> str:
    if tag in _TAG_NAMES:
        return _TAG_NAMES[tag]
    if tag & 0xC0 == 0x80:
        return f"[{tag & 0x1F}]"
    return f"tag 0x{tag:02x}"


# --- reading -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Element:
    """One decoded TLV: its identifier octet, contents and exact encoding."""

    tag: int
    value: bytes
    encoded: bytes

    @property
    def is_constructed(self) -> bool:
        """Whether the constructed bit of the identifier is set."""
        return bool(self.tag & 0x20)

    @property
    def name(self) -> str:
        """A short name of the tag for messages."""
        return _tag_name(self.tag)

    def expect(self, tag: int) -> Element:
        """
        Return this element if it has ``tag``.

        Raises:
            DERError: the element has another tag.
        """
        if self.tag != tag:
            raise DERError(f"expected {_tag_name(tag)}, found {self.name}")
        return self

    def children(self) -> list[Element]:
        """
        Decode the contents of a constructed element as a list of TLVs.

        Raises:
            DERError: the element is primitive or its contents are not TLVs.
        """
        if not self.is_constructed:
            raise DERError(f"{self.name} is not constructed")
        return read_all(self.value)


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise DERError("truncated length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0:
        raise DERError("indefinite length is not allowed in der")
    if count > _MAX_LENGTH_OCTETS:
        raise DERError(f"length of {count!r} octets is too long")
    if pos + count > len(data):
        raise DERError("truncated length")
    raw = data[pos : pos + count]
    length = int.from_bytes(raw, "big")
    if raw[0] == 0 or length < 0x80:
        raise DERError("length is not minimally encoded")
    return length, pos + count


def _read_one(data: bytes, pos: int) -> tuple[Element, int]:
    start = pos
    if pos >= len(data):
        raise DERError("truncated identifier")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DERError(f"multi-octet tag 0x{tag:02x} is not supported")
    length, pos = _read_length(data, pos + 1)
    end = pos + length
    if end > len(data):
        raise DERError(
            f"{_tag_name(tag)} of length {length!r} runs past the end of the input"
        )
    return Element(tag, data[pos:end], data[start:end]), end


def read(data: bytes) -> Element:
    """
    Decode exactly one TLV that spans all of ``data``.

    Raises:
        DERError: ``data`` is empty, malformed or has trailing bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DERError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    element, end = _read_one(data, 0)
    if end != len(data):
        raise DERError(f"{len(data) - end!r} trailing bytes after {element.name}")
    return element


def read_all(data: bytes) -> list[Element]:
    """
    Decode a concatenation of TLVs (the contents of a SEQUENCE or SET).

    Raises:
        DERError: a TLV is malformed or truncated.
    """
    elements: list[Element] = []
    pos = 0
    while pos < len(data):
        element, pos = _read_one(data, pos)
        elements.append(element)
    return elements


def _primitive(element: Element, tag: int) -> bytes:
    return element.expect(tag).value


def decode_boolean(element: Element) -> bool:
    """
    Decode a DER BOOLEAN (``00`` or ``FF``).

    Raises:
        DERError: not a BOOLEAN or not a DER boolean value.
    """
    value = _primitive(element, BOOLEAN)
    if value == b"\x00":
        return False
    if value == b"\xff":
        return True
    raise DERError(f"boolean contents {value.hex()!r} are not 00 or ff")


def decode_integer(element: Element, *, max_octets: int = 32) -> int:
    """
    Decode a minimally encoded, signed INTEGER of at most ``max_octets`` octets.

    Raises:
        DERError: not an INTEGER, empty, too long or not minimally encoded.
    """
    value = _primitive(element, INTEGER)
    if not value:
        raise DERError("integer has no contents")
    if len(value) > max_octets:
        raise DERError(
            f"integer of {len(value)!r} octets is longer than {max_octets!r}"
        )
    if len(value) > 1 and (
        (value[0] == 0x00 and value[1] < 0x80)
        or (value[0] == 0xFF and value[1] >= 0x80)
    ):
        raise DERError("integer is not minimally encoded")
    return int.from_bytes(value, "big", signed=True)


def decode_unsigned(element: Element, *, max_octets: int = 9) -> int:
    """
    Decode an INTEGER leniently as an unsigned big-endian number.

    Leading zero octets are allowed and a set high bit does not make the value
    negative: polyproto-rs writes a BasicConstraints pathLen as the eight raw
    octets of a u64 (``02 08 00 .. 00``).

    Raises:
        DERError: not an INTEGER, empty or longer than ``max_octets``.
    """
    value = _primitive(element, INTEGER)
    if not value:
        raise DERError("integer has no contents")
    if len(value) > max_octets:
        raise DERError(
            f"integer of {len(value)!r} octets is longer than {max_octets!r}"
        )
    return int.from_bytes(value, "big")


def decode_null(element: Element) -> None:
    """
    Decode a NULL.

    Raises:
        DERError: not a NULL or it has contents.
    """
    if _primitive(element, NULL):
        raise DERError("null has contents")


def decode_oid(element: Element) -> str:
    """
    Decode an OBJECT IDENTIFIER to its dotted form (``"2.5.4.3"``).

    Raises:
        DERError: not an OID, empty, truncated or not minimally encoded.
    """
    value = _primitive(element, OID)
    if not value:
        raise DERError("object identifier has no contents")
    arcs: list[int] = []
    current = 0
    digits = 0
    for octet in value:
        if digits == 0 and octet == 0x80:
            raise DERError("object identifier arc is not minimally encoded")
        digits += 1
        if digits > _MAX_ARC_OCTETS:
            raise DERError("object identifier arc is too long")
        current = (current << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(current)
            current = 0
            digits = 0
    if digits:
        raise DERError("object identifier ends inside an arc")
    first = arcs[0]
    head = [first // 40, first % 40] if first < 80 else [2, first - 80]
    return ".".join(str(arc) for arc in head + arcs[1:])


def decode_bit_string(element: Element, *, strict: bool = True) -> tuple[bytes, int]:
    """
    Decode a BIT STRING into its data octets and its unused-bits count.

    With ``strict`` the unused bits must be zero, as DER requires. With
    ``strict=False`` the count is returned but not checked against the data:
    polyproto-rs writes KeyUsage bit strings with a wrong count, so callers read
    every bit of the data instead.

    Raises:
        DERError: not a BIT STRING, empty, a count above 7, a count with no data,
            or (strict) unused bits that are set.
    """
    value = _primitive(element, BIT_STRING)
    if not value:
        raise DERError("bit string has no unused-bits octet")
    unused, data = value[0], value[1:]
    if unused > 7:
        raise DERError(f"bit string unused-bits count {unused!r} is above 7")
    if unused and not data:
        raise DERError("empty bit string has a non-zero unused-bits count")
    if strict and unused and data[-1] & ((1 << unused) - 1):
        raise DERError("bit string has set bits in its unused bits")
    return data, unused


def decode_octet_string(element: Element) -> bytes:
    """
    Decode an OCTET STRING.

    Raises:
        DERError: not an OCTET STRING.
    """
    return _primitive(element, OCTET_STRING)


def decode_string(element: Element) -> str:
    """
    Decode any of the common ASN.1 string types liberally.

    UTF8String, PrintableString, IA5String, VisibleString, T61String (as
    Latin-1), BMPString and UniversalString are read; the character repertoire of
    PrintableString is not enforced.

    Raises:
        DERError: not a string type, or contents invalid for its encoding.
    """
    codec = _STRING_CODECS.get(element.tag)
    if codec is None:
        raise DERError(f"expected a string, found {element.name}")
    try:
        return element.value.decode(codec)
    except UnicodeDecodeError as exc:
        raise DERError(f"{element.name} contents are not valid {codec}") from exc


def _parse_time_digits(text: str, year_digits: int) -> datetime.datetime:
    expected = year_digits + 11
    if len(text) != expected or not text.endswith("Z") or not text[:-1].isdigit():
        raise DERError(
            f"time {text!r} is not in the form {'Y' * year_digits}MMDDHHMMSSZ"
        )
    fields = [int(text[:year_digits])]
    fields += [int(text[i : i + 2]) for i in range(year_digits, expected - 1, 2)]
    if year_digits == 2:
        # RFC 5280 section 4.1.2.5.1: YY >= 50 means 19YY, else 20YY.
        fields[0] += 1900 if fields[0] >= 50 else 2000
    year, month, day, hour, minute, second = fields
    try:
        return datetime.datetime(
            year, month, day, hour, minute, second, tzinfo=datetime.UTC
        )
    except ValueError as exc:
        raise DERError(f"time {text!r} is not a valid date") from exc


def decode_time(element: Element) -> int:
    """
    Decode a UTCTime or GeneralizedTime (RFC 5280 forms, UTC) to UNIX seconds.

    Raises:
        DERError: another tag, or not ``YYMMDDHHMMSSZ`` / ``YYYYMMDDHHMMSSZ``.
    """
    if element.tag not in (UTC_TIME, GENERALIZED_TIME):
        raise DERError(f"expected a time, found {element.name}")
    try:
        text = element.value.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DERError("time is not ascii") from exc
    when = _parse_time_digits(text, 2 if element.tag == UTC_TIME else 4)
    return calendar.timegm(when.utctimetuple())


# --- writing -------------------------------------------------------------------


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def encode_tlv(tag: int, value: bytes) -> bytes:
    """Encode one TLV with a minimal definite length."""
    return bytes([tag]) + _encode_length(len(value)) + value


def encode_boolean(value: bool) -> bytes:
    """Encode a DER BOOLEAN."""
    return encode_tlv(BOOLEAN, b"\xff" if value else b"\x00")


def encode_integer(value: int) -> bytes:
    """Encode a minimal two's-complement INTEGER."""
    length = (value if value >= 0 else ~value).bit_length() // 8 + 1
    return encode_tlv(INTEGER, value.to_bytes(length, "big", signed=True))


def encode_null() -> bytes:
    """Encode a NULL."""
    return encode_tlv(NULL, b"")


def _encode_arc(arc: int) -> bytes:
    out = [arc & 0x7F]
    arc >>= 7
    while arc:
        out.append(0x80 | (arc & 0x7F))
        arc >>= 7
    return bytes(reversed(out))


def encode_oid(dotted: str) -> bytes:
    """
    Encode an OBJECT IDENTIFIER from its dotted form.

    Raises:
        DERError: ``dotted`` is not a valid OID.
    """
    parts = dotted.split(".")
    if len(parts) < 2 or not all(part.isdigit() and part.isascii() for part in parts):
        raise DERError(f"{dotted!r} is not a dotted object identifier")
    arcs = [int(part) for part in parts]
    if arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise DERError(f"{dotted!r} has an invalid first or second arc")
    body = [arcs[0] * 40 + arcs[1], *arcs[2:]]
    return encode_tlv(OID, b"".join(_encode_arc(arc) for arc in body))


def encode_bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    """
    Encode a BIT STRING.

    Raises:
        DERError: the count is above 7, or set for empty data.
    """
    if not 0 <= unused_bits <= 7 or (unused_bits and not data):
        raise DERError(f"invalid unused-bits count {unused_bits!r}")
    return encode_tlv(BIT_STRING, bytes([unused_bits]) + data)


def encode_octet_string(data: bytes) -> bytes:
    """Encode an OCTET STRING."""
    return encode_tlv(OCTET_STRING, data)


def encode_utf8_string(text: str) -> bytes:
    """Encode a UTF8String."""
    return encode_tlv(UTF8_STRING, text.encode("utf-8"))


def encode_ia5_string(text: str) -> bytes:
    """
    Encode an IA5String.

    Raises:
        DERError: ``text`` has characters outside ASCII.
    """
    if not text.isascii():
        raise DERError(f"{text!r} is not an ia5 string")
    return encode_tlv(IA5_STRING, text.encode("ascii"))


def encode_printable_string(text: str) -> bytes:
    """
    Encode a PrintableString (the repertoire is the caller's responsibility).

    Raises:
        DERError: ``text`` has characters outside ASCII.
    """
    if not text.isascii():
        raise DERError(f"{text!r} is not a printable string")
    return encode_tlv(PRINTABLE_STRING, text.encode("ascii"))


def encode_sequence(*elements: bytes) -> bytes:
    """Encode a SEQUENCE of already encoded elements, in the given order."""
    return encode_tlv(SEQUENCE, b"".join(elements))


def encode_set(*elements: bytes) -> bytes:
    """Encode a SET OF, with its elements in DER (sorted) order."""
    return encode_tlv(SET, b"".join(sorted(elements)))


def encode_explicit(number: int, inner: bytes) -> bytes:
    """Wrap an encoded element in an explicit context tag ``[number]``."""
    return encode_tlv(context_tag(number), inner)


def encode_time(seconds: int) -> bytes:
    """
    Encode UNIX seconds as RFC 5280 requires: UTCTime through 2049, else
    GeneralizedTime.

    Raises:
        DERError: the time is outside the years 1 to 9999.
    """
    try:
        when = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise DERError(f"time {seconds!r} cannot be encoded") from exc
    if 1950 <= when.year < 2050:
        return encode_tlv(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    text = f"{when.year:04d}" + when.strftime("%m%d%H%M%SZ")
    return encode_tlv(GENERALIZED_TIME, text.encode("ascii"))
