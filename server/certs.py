"""
X.509 rules for polyproto ID-Certs and ID-CSRs (polyproto core spec section 6.1).

Certificates (RFC 5280) and PKCS #10 requests (RFC 2986) are parsed with the
project's own DER reader, :mod:`server.der`, because the polyproto-rs library
writes a few encodings that ``cryptography`` refuses: an explicit ``cA FALSE``,
a non-minimal pathLen INTEGER, KeyUsage bit strings with a wrong unused-bits
count, and KeyUsage/BasicConstraints as plain CSR attributes instead of inside an
extensionRequest. Exactly those quirks are tolerated; signatures are always
verified over the original encoded bytes. What the server issues is minimal DER
with exactly two critical extensions, BasicConstraints and KeyUsage.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PublicKey,
)

from .der import (
    BOOLEAN,
    INTEGER,
    SEQUENCE,
    SET,
    DERError,
    Element,
    context_tag,
    decode_bit_string,
    decode_boolean,
    decode_integer,
    decode_octet_string,
    decode_oid,
    decode_string,
    decode_time,
    decode_unsigned,
    read,
)

__all__ = [
    "BASIC_CONSTRAINTS_OID",
    "DC_OID",
    "ED25519_OID",
    "KEY_USAGE_OID",
    "MAX_SERIAL",
    "UID_OID",
    "UNIQUE_IDENTIFIER_OID",
    "CSR",
    "ActorName",
    "CertificateError",
    "IDCert",
    "InvalidCSR",
    "InvalidIDCert",
    "check_actor_cert_for",
    "checked_domain",
    "decode_cert_input",
    "der_to_base64",
    "der_to_pem",
    "load_csr",
    "load_id_cert",
    "load_server_cert",
]

UID_OID: Final = "0.9.2342.19200300.100.1.1"
UNIQUE_IDENTIFIER_OID: Final = "0.9.2342.19200300.100.1.44"
_CN_OID: Final = "2.5.4.3"
DC_OID: Final = "0.9.2342.19200300.100.1.25"
_X500_UNIQUE_IDENTIFIER_OID: Final = "2.5.4.45"
ED25519_OID: Final = "1.3.101.112"
BASIC_CONSTRAINTS_OID: Final = "2.5.29.19"
KEY_USAGE_OID: Final = "2.5.29.15"
_EXTENSION_REQUEST_OID: Final = "1.2.840.113549.1.9.14"

# Names used in messages for algorithms that clients commonly send instead.
_ALGORITHM_NAMES: Final[dict[str, str]] = {
    "1.2.840.113549.1.1.1": "rsa",
    "1.2.840.113549.1.1.5": "sha1-with-rsa",
    "1.2.840.113549.1.1.10": "rsassa-pss",
    "1.2.840.113549.1.1.11": "sha256-with-rsa",
    "1.2.840.113549.1.1.12": "sha384-with-rsa",
    "1.2.840.113549.1.1.13": "sha512-with-rsa",
    "1.2.840.10040.4.1": "dsa",
    "1.2.840.10045.2.1": "ecdsa",
    "1.2.840.10045.4.3.2": "ecdsa-with-sha256",
    "1.2.840.10045.4.3.3": "ecdsa-with-sha384",
    "1.2.840.10045.4.3.4": "ecdsa-with-sha512",
    "1.3.101.110": "x25519",
    "1.3.101.111": "x448",
    "1.3.101.113": "ed448",
}

# KeyUsage bits in RFC 5280 section 4.2.1.3 order (bit 0 is the first bit).
_KEY_USAGE_BITS: Final = (
    "digitalSignature",
    "contentCommitment",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
)

# PROTOCOL section 3: FID syntax; re.ASCII keeps IGNORECASE from folding e.g. "K".
_FLAGS: Final = re.IGNORECASE | re.ASCII
_LOCAL_NAME_RE: Final = re.compile(r"[a-z0-9._%+-]{1,64}", _FLAGS)
_FID_RE: Final = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(\.[a-z0-9-]+)*", _FLAGS)
_DOMAIN_RE: Final = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*", _FLAGS)
_LABEL_RE: Final = re.compile(r"[a-z0-9-]+", _FLAGS)
_MAX_SESSION_ID: Final = 32
MAX_SERIAL: Final = 2**159  # positive and at most 20 octets in DER
_MAX_QUOTED: Final = 64


class CertificateError(ValueError):
    """Root of the certificate errors; ``str()`` names the rule that failed."""


class InvalidCSR(CertificateError):
    """An ID-CSR breaks a rule of PROTOCOL sections 4 and 9."""


class InvalidIDCert(CertificateError):
    """An ID-Cert breaks a rule of PROTOCOL section 4."""


_Error: TypeAlias = type[CertificateError]
_Check: TypeAlias = Callable[["_RawCert"], tuple["ActorName | None", str, bool]]


def _short(text: str) -> str:
    """Cut a client-supplied value down for quoting in a message."""
    return text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 3] + "..."


def _algorithm_label(oid: str) -> str:
    name = _ALGORITHM_NAMES.get(oid)
    return f"{name} ({oid})" if name else oid


# --- input encodings (PROTOCOL section 3) -----------------------------------------

_PEM_RE: Final = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END ([A-Z0-9 ]+)-----", re.DOTALL
)
_PEM_LABELS: Final = frozenset(
    {"CERTIFICATE", "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"}
)
_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
_URLSAFE: Final = str.maketrans("-_", "+/")


def _decode_base64(text: str) -> bytes:
    compact = "".join(text.split())
    if not compact:
        raise ValueError("certificate input is empty")
    if not _BASE64_RE.fullmatch(compact):
        raise ValueError("certificate input is neither base64 nor pem")
    compact = compact.rstrip("=")
    if len(compact) % 4 == 1:
        raise ValueError("certificate input has an impossible base64 length")
    padded = compact.translate(_URLSAFE) + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise ValueError("certificate input is not valid base64") from exc


def _decode_pem(text: str) -> bytes:
    match = _PEM_RE.search(text)
    if match is None:
        raise ValueError("pem input has no complete begin/end block")
    label, body, end_label = match.groups()
    if label != end_label:
        raise ValueError(f"pem begin label {label!r} does not match end {end_label!r}")
    if label not in _PEM_LABELS:
        raise ValueError(f"pem label {label!r} is not a certificate or request")
    body = "".join(body.split())
    try:
        return base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError("pem body is not valid base64") from exc


def _require_der_sequence(data: bytes) -> bytes:
    try:
        read(data).expect(SEQUENCE)
    except DERError as exc:
        raise ValueError(f"certificate input is not a der sequence: {exc}") from exc
    return data


def decode_cert_input(text: str | bytes) -> bytes:
    """
    Decode a certificate or CSR as a client may send it, to DER.

    Accepts base64 of DER (standard or URL-safe alphabet, padded or not, line
    breaks allowed), PEM (``CERTIFICATE``, ``CERTIFICATE REQUEST``, ``NEW
    CERTIFICATE REQUEST``), base64 of PEM, and raw DER given as ``bytes``. Only
    the outer encoding is checked: the result is one DER SEQUENCE.

    Raises:
        TypeError: ``text`` is neither ``str`` nor ``bytes``.
        ValueError: the input is none of the accepted encodings.
    """
    if isinstance(text, bytes | bytearray):
        data = bytes(text)
        if not data.isascii():
            return _require_der_sequence(data)
        text = data.decode("ascii")
    if not isinstance(text, str):
        raise TypeError(f"expected str or bytes, got {type(text).__name__}")
    if "-----BEGIN" in text:
        return _require_der_sequence(_decode_pem(text))
    raw = _decode_base64(text)
    if raw.lstrip().startswith(b"-----BEGIN"):
        try:
            inner = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError("base64-wrapped pem is not ascii") from exc
        return _require_der_sequence(_decode_pem(inner))
    return _require_der_sequence(raw)


def der_to_base64(der: bytes) -> str:
    """Encode DER as base64 with the standard alphabet and padding."""
    return base64.b64encode(der).decode("ascii")


def der_to_pem(der: bytes, label: str = "CERTIFICATE") -> str:
    """Encode DER as a PEM block with 64-character lines and a final newline."""
    body = der_to_base64(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----\n"])


# --- records -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActorName:
    """A checked actor pDN: local name, home-server domain and session ID."""

    local_name: str
    domain: str
    session_id: str

    @property
    def fid(self) -> str:
        """The federation ID, ``local_name@domain``."""
        return f"{self.local_name}@{self.domain}"


@dataclass(frozen=True, slots=True)
class CSR:
    """A checked ID-CSR of an actor of this server."""

    der: bytes
    subject: ActorName
    subject_der: bytes
    public_key: bytes


@dataclass(frozen=True, slots=True)
class IDCert:
    """A structurally checked ID-Cert (actor or server root)."""

    der: bytes
    serial_number: int
    issuer_der: bytes
    subject_der: bytes
    issuer_domain: str
    subject: ActorName | None
    not_valid_before: int
    not_valid_after: int
    public_key: bytes
    tbs: bytes
    signature: bytes
    is_ca: bool

    def verify_signed_by(self, public_key: bytes) -> None:
        """
        Check that the Ed25519 key ``public_key`` signed this certificate.

        Raises:
            InvalidIDCert: the key is malformed or the signature does not verify.
        """
        _verify(public_key, self.signature, self.tbs, InvalidIDCert)

    def is_valid_at(self, t: int) -> bool:
        """Whether ``t`` (UNIX seconds) lies in notBefore..notAfter, inclusive."""
        return self.not_valid_before <= t <= self.not_valid_after


def _verify(public_key: bytes, signature: bytes, data: bytes, error: _Error) -> None:
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise error("signing public key is not a valid ed25519 key") from exc
    try:
        key.verify(signature, data)
    except InvalidSignature as exc:
        raise error("signature does not verify") from exc


# --- names (spec section 6.1.1.1) ------------------------------------------------


def _name_parts(name: Element) -> list[tuple[str, Element]]:
    """Flatten an RDNSequence into (type OID, value) pairs in encoded order."""
    parts: list[tuple[str, Element]] = []
    for rdn in name.expect(SEQUENCE).children():
        avas = rdn.expect(SET).children()
        if not avas:
            raise DERError("empty relative distinguished name")
        for ava in avas:
            fields = ava.expect(SEQUENCE).children()
            if len(fields) != 2:
                raise DERError("attribute is not a type and one value")
            parts.append((decode_oid(fields[0]), fields[1]))
    return parts


def _text(value: Element, label: str, error: _Error) -> str:
    try:
        return decode_string(value)
    except DERError as exc:
        raise error(f"{label} value is not a readable string: {exc}") from exc


def _single(
    parts: list[tuple[str, Element]], oid: str, label: str, what: str, error: _Error
) -> str | None:
    values = [value for found, value in parts if found == oid]
    if len(values) > 1:
        raise error(f"{what} has {len(values)} {label} attributes, expected one")
    return _text(values[0], label, error) if values else None


def _dc_labels(parts: list[tuple[str, Element]], what: str, error: _Error) -> list[str]:
    """DC values in encoded order (most significant first), lower-cased."""
    labels = [_text(value, "dc", error) for oid, value in parts if oid == DC_OID]
    if not labels:
        raise error(f"{what} has no dc components")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise error(f"{what} dc {_short(label)!r} is not a valid domain label")
    return [label.lower() for label in labels]


def _domain_of(labels: list[str]) -> str:
    return ".".join(reversed(labels))


def _check_server_name(
    parts: list[tuple[str, Element]], what: str, error: _Error
) -> str:
    """Check a server pDN (DC components only); return its domain."""
    for oid, _ in parts:
        if oid != DC_OID:
            name = "cn" if oid == _CN_OID else oid
            raise error(f"{what} must contain only dc components, found {name!r}")
    return _domain_of(_dc_labels(parts, what, error))


def _check_domain_order(labels: list[str], domain: str, error: _Error) -> None:
    expected = list(reversed(domain.split(".")))
    if labels == expected:
        return
    found = _domain_of(labels)
    if labels == domain.split("."):
        raise error(
            f"dc components are in the wrong order ({found!r}): the most "
            f"significant (dc={expected[0]!r}) must come first"
        )
    raise error(f"dc components spell {_short(found)!r}, expected {domain!r}")


def _check_actor_name(
    parts: list[tuple[str, Element]], what: str, error: _Error, domain: str | None
) -> ActorName:
    """Check an actor pDN; ``domain`` (if given) is the domain its DCs must spell."""
    cn = _single(parts, _CN_OID, "cn", what, error)
    if cn is None:
        raise error(f"{what} has no cn")
    if not _LOCAL_NAME_RE.fullmatch(cn):
        raise error(f"cn {_short(cn)!r} is not a valid local name of 1 to 64 chars")
    labels = _dc_labels(parts, what, error)
    if domain is not None:
        _check_domain_order(labels, domain, error)
    actor_domain = _domain_of(labels)
    fid = f"{cn.lower()}@{actor_domain}"

    uid = _single(parts, UID_OID, "uid", what, error)
    if uid is None:
        raise error(f"{what} has no uid ({UID_OID})")
    if not _FID_RE.fullmatch(uid) or uid.lower() != fid:
        raise error(
            f"uid {_short(uid)!r} does not match cn and dc components ({fid!r})"
        )

    session_id = _single(parts, UNIQUE_IDENTIFIER_OID, "uniqueidentifier", what, error)
    if session_id is None:
        hint = ""
        if any(oid == _X500_UNIQUE_IDENTIFIER_OID for oid, _ in parts):
            hint = f"; {_X500_UNIQUE_IDENTIFIER_OID} is the wrong oid for a session id"
        raise error(
            f"{what} has no uniqueidentifier ({UNIQUE_IDENTIFIER_OID}) holding the "
            f"session id{hint}"
        )
    if not 1 <= len(session_id) <= _MAX_SESSION_ID or not session_id.isascii():
        raise error(
            f"session id {_short(session_id)!r} must be 1 to {_MAX_SESSION_ID} "
            "ia5 characters"
        )
    return ActorName(cn.lower(), actor_domain, session_id)


def _name_key(parts: list[tuple[str, Element]]) -> list[tuple[str, str | bytes]]:
    """A comparable form of a name: string values case-folded, others raw."""
    key: list[tuple[str, str | bytes]] = []
    for oid, value in parts:
        try:
            key.append((oid, decode_string(value).lower()))
        except DERError:
            key.append((oid, value.encoded))
    return key


# --- algorithms, keys and extensions ------------------------------------------------


def _check_ed25519(algorithm: Element, what: str, error: _Error) -> None:
    fields = algorithm.expect(SEQUENCE).children()
    if not fields:
        raise DERError(f"{what} algorithm identifier is empty")
    oid = decode_oid(fields[0])
    if oid != ED25519_OID:
        raise error(
            f"{what} algorithm {_algorithm_label(oid)!r} is not supported, only ed25519"
        )
    if len(fields) != 1:
        # RFC 8410 section 3: the parameters MUST be absent.
        raise error(f"{what} algorithm ed25519 must not have parameters")


def _public_key(spki: Element, error: _Error) -> bytes:
    fields = spki.expect(SEQUENCE).children()
    if len(fields) != 2:
        raise DERError("subject public key info is not an algorithm and a key")
    _check_ed25519(fields[0], "public key", error)
    key, unused = decode_bit_string(fields[1])
    if unused:
        raise error(f"public key bit string has {unused!r} unused bits")
    if len(key) != 32:
        raise error(f"ed25519 public key has {len(key)!r} octets, expected 32")
    return key


def _signature(element: Element, error: _Error) -> bytes:
    signature, unused = decode_bit_string(element)
    if unused:
        raise error(f"signature bit string has {unused!r} unused bits")
    if len(signature) != 64:
        raise error(f"ed25519 signature has {len(signature)!r} octets, expected 64")
    return signature


@dataclass(frozen=True, slots=True)
class _Extension:
    oid: str
    critical: bool
    value: bytes


def _read_extensions(element: Element) -> list[_Extension]:
    """Read Extensions; an explicit ``critical FALSE`` is tolerated (polyproto-rs)."""
    extensions: list[_Extension] = []
    for item in element.expect(SEQUENCE).children():
        fields = item.expect(SEQUENCE).children()
        if len(fields) not in (2, 3):
            raise DERError("extension is not an oid, criticality and value")
        critical = decode_boolean(fields[1]) if len(fields) == 3 else False
        value = decode_octet_string(fields[-1])
        extensions.append(_Extension(decode_oid(fields[0]), critical, value))
    return extensions


def _basic_constraints(value: bytes) -> tuple[bool, int | None]:
    """
    Read BasicConstraints leniently: explicit ``cA FALSE`` and a non-minimal,
    unsigned pathLen INTEGER are accepted, as polyproto-rs writes them.
    """
    fields = read(value).expect(SEQUENCE).children()
    ca, path_length, index = False, None, 0
    if index < len(fields) and fields[index].tag == BOOLEAN:
        ca = decode_boolean(fields[index])
        index += 1
    if index < len(fields) and fields[index].tag == INTEGER:
        path_length = decode_unsigned(fields[index])
        index += 1
    if index != len(fields):
        raise DERError(f"unexpected {fields[index].name} in basicconstraints")
    return ca, path_length


def _key_usage(value: bytes | Element) -> frozenset[str]:
    """
    Read KeyUsage flags from every bit of the bit string. The unused-bits count
    is ignored because polyproto-rs writes a wrong one; reading all bits can only
    reveal more flags, never hide one.
    """
    element = value if isinstance(value, Element) else read(value)
    data, _ = decode_bit_string(element, strict=False)
    if len(data) > 2:
        raise DERError(f"key usage bit string of {len(data)!r} octets is too long")
    bits = int.from_bytes(data.ljust(2, b"\x00"), "big")
    return frozenset(
        name for index, name in enumerate(_KEY_USAGE_BITS) if bits & (0x8000 >> index)
    )


# --- CSRs (PKCS #10) ---------------------------------------------------------------


def _check_requested(oid: str, value: Element, error: _Error) -> None:
    """Refuse requested CA rights; other requested extensions are ignored."""
    try:
        if oid == BASIC_CONSTRAINTS_OID:
            ca, _ = _basic_constraints(value.encoded)
            if ca:
                raise error("csr requests ca=true in basicconstraints")
        elif oid == KEY_USAGE_OID and "keyCertSign" in _key_usage(value):
            raise error("csr requests the keycertsign key usage")
    except DERError as exc:
        name = "basicconstraints" if oid == BASIC_CONSTRAINTS_OID else "keyusage"
        raise error(f"requested {name} is malformed: {exc}") from exc


def _check_attributes(attributes: list[Element], error: _Error) -> None:
    for attribute in attributes:
        fields = attribute.expect(SEQUENCE).children()
        if len(fields) != 2:
            raise DERError("csr attribute is not a type and a set of values")
        oid = decode_oid(fields[0])
        values = fields[1].expect(SET).children()
        if oid == _EXTENSION_REQUEST_OID:
            for extensions in values:
                for extension in _read_extensions(extensions):
                    inner = read(extension.value)
                    _check_requested(extension.oid, inner, error)
        elif oid in (BASIC_CONSTRAINTS_OID, KEY_USAGE_OID):
            # polyproto-rs puts the extension values directly into attributes.
            for value in values:
                _check_requested(oid, value, error)


def _split_csr(der: bytes) -> tuple[Element, list[Element], list[Element]]:
    """Return (info, info fields, attributes) after checking the outer shape."""
    outer = read(der).expect(SEQUENCE).children()
    if len(outer) != 3:
        raise DERError("csr is not info, algorithm and signature")
    info = outer[0].expect(SEQUENCE)
    fields = info.children()
    if len(fields) == 3:
        fields.append(Element(context_tag(0), b"", b"\xa0\x00"))
    if len(fields) != 4:
        raise DERError("csr info is not version, subject, key and attributes")
    attributes = fields[3].expect(context_tag(0)).children()
    return info, [*fields[:3], outer[1], outer[2]], attributes


def load_csr(der: bytes, *, domain: str) -> CSR:
    """
    Parse and check an actor ID-CSR for this server (PROTOCOL sections 4, 9).

    Args:
        der: the CSR as DER (see :func:`decode_cert_input`).
        domain: this server's domain; the subject's DCs must spell it.

    Returns:
        The checked CSR; its subject may be copied into an ID-Cert as is.

    Raises:
        ValueError: ``domain`` is not a valid domain.
        InvalidCSR: the CSR is malformed or breaks a rule.
    """
    domain = checked_domain(domain)
    try:
        info, fields, attributes = _split_csr(der)
        version, subject, spki, algorithm, signature_element = fields
        if decode_integer(version) != 0:
            raise InvalidCSR(f"csr version {decode_integer(version)!r} is not 0 (v1)")
        public_key = _public_key(spki, InvalidCSR)
        _check_ed25519(algorithm, "signature", InvalidCSR)
        signature = _signature(signature_element, InvalidCSR)
        _verify(public_key, signature, info.encoded, InvalidCSR)
        parts = _name_parts(subject)
    except DERError as exc:
        raise InvalidCSR(f"csr is not valid der: {exc}") from exc

    actor = _check_actor_name(parts, "subject", InvalidCSR, domain)
    try:
        _check_attributes(attributes, InvalidCSR)
    except DERError as exc:
        raise InvalidCSR(f"csr attributes are malformed: {exc}") from exc
    return CSR(bytes(der), actor, subject.encoded, public_key)


def checked_domain(domain: str) -> str:
    """``domain`` lower-cased, after checking it is a domain name.

    Raises:
        TypeError: it is not a string.
        ValueError: it is not a valid domain name.
    """
    if not isinstance(domain, str):
        raise TypeError(f"domain must be str, got {type(domain).__name__}")
    if not _DOMAIN_RE.fullmatch(domain):
        raise ValueError(f"domain {domain!r} is not a valid domain")
    return domain.lower()


# --- certificates (RFC 5280 section 4.1) ------------------------------------------


@dataclass(frozen=True, slots=True)
class _RawCert:
    der: bytes
    tbs: Element
    serial_number: int
    issuer: Element
    subject: Element
    not_valid_before: int
    not_valid_after: int
    public_key: bytes
    signature: bytes
    extensions: dict[str, _Extension]


def _parse_cert(der: bytes) -> _RawCert:
    """Parse the common fields of an ID-Cert; DER errors propagate."""
    outer = read(der).expect(SEQUENCE).children()
    if len(outer) != 3:
        raise DERError("certificate is not tbs, algorithm and signature")
    tbs = outer[0].expect(SEQUENCE)
    fields = tbs.children()
    if not fields or fields[0].tag != context_tag(0):
        raise InvalidIDCert("certificate is not x509 v3 (version field missing)")
    version_fields = fields[0].children()
    if len(version_fields) != 1 or decode_integer(version_fields[0]) != 2:
        raise InvalidIDCert("certificate is not x509 v3")
    if len(fields) < 7:
        raise DERError("tbs certificate has too few fields")
    serial, algorithm, issuer, validity, subject, spki = fields[1:7]
    if fields[2].encoded != outer[1].encoded:
        raise InvalidIDCert("tbs signature algorithm differs from the outer one")
    _check_ed25519(algorithm, "signature", InvalidIDCert)
    serial_number = decode_integer(serial, max_octets=21)
    if serial_number <= 0:
        raise InvalidIDCert(f"serial number {serial_number!r} is not positive")
    if serial_number >= 2**160:
        raise InvalidIDCert("serial number is longer than 20 octets")
    times = validity.expect(SEQUENCE).children()
    if len(times) != 2:
        raise DERError("validity is not notbefore and notafter")
    not_before, not_after = decode_time(times[0]), decode_time(times[1])
    if not_after < not_before:
        raise InvalidIDCert("certificate notafter lies before its notbefore")
    return _RawCert(
        der=bytes(der),
        tbs=tbs,
        serial_number=serial_number,
        issuer=issuer,
        subject=subject,
        not_valid_before=not_before,
        not_valid_after=not_after,
        public_key=_public_key(spki, InvalidIDCert),
        signature=_signature(outer[2], InvalidIDCert),
        extensions=_tail_extensions(fields[7:]),
    )


def _tail_extensions(tail: list[Element]) -> dict[str, _Extension]:
    """Skip issuerUniqueID/subjectUniqueID, then read [3] extensions."""
    optional = [context_tag(1, constructed=False), context_tag(2, constructed=False)]
    while tail and optional and tail[0].tag in optional:
        optional = optional[optional.index(tail[0].tag) + 1 :]
        tail = tail[1:]
    if not tail:
        return {}
    if len(tail) != 1 or tail[0].tag != context_tag(3):
        raise DERError(f"unexpected {tail[0].name} at the end of the tbs certificate")
    inner = tail[0].children()
    if len(inner) != 1:
        raise DERError("[3] does not hold exactly one extensions sequence")
    found: dict[str, _Extension] = {}
    for extension in _read_extensions(inner[0]):
        if extension.oid in found:
            raise InvalidIDCert(f"extension {extension.oid!r} appears twice")
        found[extension.oid] = extension
    return found


def _cert_capabilities(raw: _RawCert) -> tuple[bool, int | None, frozenset[str] | None]:
    """Return (cA, pathLen, key usages or None) and check criticality rules."""
    for oid, extension in raw.extensions.items():
        known = oid in (BASIC_CONSTRAINTS_OID, KEY_USAGE_OID)
        if extension.critical and not known:
            raise InvalidIDCert(f"unknown critical extension {oid!r}")
        if known and not extension.critical:
            name = "basicconstraints" if oid == BASIC_CONSTRAINTS_OID else "keyusage"
            raise InvalidIDCert(f"{name} extension must be critical")
    ca, path_length, usages = False, None, None
    try:
        if BASIC_CONSTRAINTS_OID in raw.extensions:
            bc = raw.extensions[BASIC_CONSTRAINTS_OID].value
            ca, path_length = _basic_constraints(bc)
        if KEY_USAGE_OID in raw.extensions:
            usages = _key_usage(raw.extensions[KEY_USAGE_OID].value)
    except DERError as exc:
        raise InvalidIDCert(
            f"basicconstraints or keyusage is malformed: {exc}"
        ) from exc
    return ca, path_length, usages


def _load(der: bytes, check: _Check) -> IDCert:
    try:
        raw = _parse_cert(der)
        subject, issuer_domain, ca = check(raw)
    except DERError as exc:
        raise InvalidIDCert(f"certificate is not valid der: {exc}") from exc
    return IDCert(
        der=raw.der,
        serial_number=raw.serial_number,
        issuer_der=raw.issuer.encoded,
        subject_der=raw.subject.encoded,
        issuer_domain=issuer_domain,
        subject=subject,
        not_valid_before=raw.not_valid_before,
        not_valid_after=raw.not_valid_after,
        public_key=raw.public_key,
        tbs=raw.tbs.encoded,
        signature=raw.signature,
        is_ca=ca,
    )


def _check_actor_cert(raw: _RawCert) -> tuple[ActorName | None, str, bool]:
    issuer_domain = _check_server_name(_name_parts(raw.issuer), "issuer", InvalidIDCert)
    actor = _check_actor_name(
        _name_parts(raw.subject), "subject", InvalidIDCert, issuer_domain
    )
    ca, _, usages = _cert_capabilities(raw)
    if ca:
        raise InvalidIDCert("actor certificate must not be a ca")
    if usages is None:
        raise InvalidIDCert("actor certificate has no keyusage extension")
    if "keyCertSign" in usages:
        raise InvalidIDCert("actor certificate must not have keycertsign")
    if not usages & {"digitalSignature", "contentCommitment"}:
        raise InvalidIDCert(
            "actor certificate needs digitalsignature or contentcommitment"
        )
    return actor, issuer_domain, ca


def _check_root_cert(raw: _RawCert) -> tuple[ActorName | None, str, bool]:
    subject_parts = _name_parts(raw.subject)
    domain = _check_server_name(subject_parts, "subject", InvalidIDCert)
    if _name_key(_name_parts(raw.issuer)) != _name_key(subject_parts):
        raise InvalidIDCert("root certificate issuer differs from its subject")
    ca, path_length, usages = _cert_capabilities(raw)
    if not ca:
        raise InvalidIDCert("root certificate must have basicconstraints ca=true")
    if path_length != 0:
        raise InvalidIDCert(
            f"root certificate pathlen must be 0, found {path_length!r}"
        )
    if usages is None or "keyCertSign" not in usages:
        raise InvalidIDCert("root certificate must have the keycertsign key usage")
    _verify(raw.public_key, raw.signature, raw.tbs.encoded, InvalidIDCert)
    return None, domain, ca


# Parsing and the self-signature check are pure functions of the DER bytes, and
# IDCert is frozen: cache them, since the same certs come back on every identify
# and token check. Failures are not cached.
@functools.lru_cache(maxsize=4096)
def load_id_cert(der: bytes) -> IDCert:
    """
    Parse an actor ID-Cert and check the structural rules of PROTOCOL section 4.

    Checks: X.509 v3, Ed25519 key and signature algorithm, an actor pDN as
    subject and a server pDN with the same DCs as issuer, cA false or absent,
    no keyCertSign, digitalSignature or contentCommitment, KeyUsage and
    BasicConstraints critical, no unknown critical extension. The issuer's
    signature and the validity period are not checked here (see
    :func:`check_actor_cert_for`).

    Raises:
        InvalidIDCert: the certificate is malformed or breaks a rule.
    """
    return _load(der, _check_actor_cert)


@functools.lru_cache(maxsize=256)
def load_server_cert(der: bytes) -> IDCert:
    """
    Parse a server (root) ID-Cert and check its rules.

    Checks: X.509 v3, Ed25519, a DC-only pDN, issuer equal to subject, a valid
    self-signature, critical BasicConstraints with cA true and pathLen 0, and a
    critical KeyUsage with keyCertSign. Validity is not checked.

    Raises:
        InvalidIDCert: the certificate is malformed or breaks a rule.
    """
    return _load(der, _check_root_cert)


# --- chain rules (PROTOCOL section 4, foreign actors) ---------------------------


def check_actor_cert_for(cert: IDCert, *, issuer: IDCert, now: int) -> None:
    """
    Check that ``issuer`` (a server root) vouches for actor cert ``cert`` at ``now``.

    Rules: ``cert`` is a valid actor ID-Cert and ``issuer`` a valid root; the
    FID's domain equals the root's DCs; the root's key verifies the signature;
    ``cert``'s validity lies within the root's (spec section 6.1.1); ``now``
    lies within ``cert``'s validity.

    Raises:
        InvalidIDCert: a rule fails; the message names it.
    """
    subject = cert.subject
    if subject is None:
        raise InvalidIDCert("certificate is not an actor certificate")
    if not issuer.is_ca or issuer.subject is not None:
        raise InvalidIDCert("issuer is not a valid root certificate")
    # Both records come from load_id_cert / load_server_cert (frozen, checked on
    # load), so their fields are trusted here: no second parse or self-signature
    # check on this hot path (identify).
    actor, root = cert, issuer
    if subject.domain != root.issuer_domain:
        raise InvalidIDCert(
            f"fid domain {subject.domain!r} does not match the issuer dcs "
            f"{root.issuer_domain!r}"
        )
    # The issuer name needs no separate comparison: load_id_cert made it DC-only
    # with the subject's DCs, and load_server_cert made the root's subject DC-only.
    actor.verify_signed_by(root.public_key)
    if not (
        root.not_valid_before <= actor.not_valid_before
        and actor.not_valid_after <= root.not_valid_after
    ):
        raise InvalidIDCert("certificate validity lies outside the issuer's validity")
    if now < actor.not_valid_before:
        raise InvalidIDCert(f"certificate is not yet valid at {now!r}")
    if now > actor.not_valid_after:
        raise InvalidIDCert(f"certificate has expired at {now!r}")
