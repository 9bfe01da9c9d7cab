"""Tests for server/certs.py: ID-CSR and ID-Cert rules (PROTOCOL sections 4, 9)."""

from __future__ import annotations

import base64
import contextlib
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from server import certs, der, issuing
from server.certs import (
    CSR,
    UID_OID,
    UNIQUE_IDENTIFIER_OID,
    ActorName,
    CertificateError,
    IDCert,
    InvalidCSR,
    InvalidIDCert,
)
from server.der import DERError
from tests.data import make_vectors
from tests.openssl_tools import GOOD_SUBJECT
from tests.openssl_tools import openssl as _openssl
from tests.openssl_tools import openssl_csr as _openssl_csr

DATA = Path(__file__).parent.parent / "data"
T0 = 1_700_000_000
DAY = 86_400
YEAR = 365 * DAY
CN = "2.5.4.3"
DC = "0.9.2342.19200300.100.1.25"
X500_UNIQUE_IDENTIFIER = "2.5.4.45"
BC = "2.5.29.19"
KU = "2.5.29.15"
EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
ED25519_ALGORITHM = bytes.fromhex("300506032b6570")

OTHER_KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)

requires_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl CLI is not installed"
)


# --- helpers: openssl ----------------------------------------------------------------


def _openssl_text(cert_der: bytes) -> str:
    return _openssl(
        "x509", "-inform", "DER", "-text", "-noout", stdin=cert_der
    ).decode()


# --- helpers: hand-built DER ---------------------------------------------------------


def _rdn(oid: str, value: bytes) -> bytes:
    return der.encode_set(der.encode_sequence(der.encode_oid(oid), value))


def _name(*avas: tuple[str, bytes]) -> bytes:
    return der.encode_sequence(*(_rdn(oid, value) for oid, value in avas))


def _actor_avas(
    local: str = "alice",
    labels: tuple[str, ...] = ("com", "example"),
    *,
    uid: str | None = None,
    session_id: str = "sess1",
    session_oid: str = UNIQUE_IDENTIFIER_OID,
) -> list[tuple[str, bytes]]:
    uid = uid if uid is not None else f"{local}@{'.'.join(reversed(labels))}"
    return [
        (CN, der.encode_utf8_string(local)),
        *((DC, der.encode_ia5_string(label)) for label in labels),
        (UID_OID, der.encode_ia5_string(uid)),
        (session_oid, der.encode_ia5_string(session_id)),
    ]


def _server_name(*labels: str) -> bytes:
    return _name(*((DC, der.encode_ia5_string(label)) for label in labels))


def _spki(key: Ed25519PrivateKey) -> bytes:
    raw = key.public_key().public_bytes_raw()
    return der.encode_sequence(ED25519_ALGORITHM, der.encode_bit_string(raw))


def _attribute(oid: str, *values: bytes) -> bytes:
    return der.encode_sequence(der.encode_oid(oid), der.encode_set(*values))


def _build_csr(
    key: Ed25519PrivateKey,
    name: bytes,
    attributes: tuple[bytes, ...] = (),
) -> bytes:
    info = der.encode_sequence(
        der.encode_integer(0),
        name,
        _spki(key),
        der.encode_tlv(der.context_tag(0), b"".join(sorted(attributes))),
    )
    signature = der.encode_bit_string(key.sign(info))
    return der.encode_sequence(info, ED25519_ALGORITHM, signature)


def _ext(oid: str, value_hex: str, critical: bool | None = True) -> bytes:
    flag = b"" if critical is None else der.encode_boolean(critical)
    return der.encode_sequence(
        der.encode_oid(oid), flag, der.encode_octet_string(bytes.fromhex(value_hex))
    )


BC_ACTOR = _ext(BC, "3000")
BC_ROOT = _ext(BC, "30060101ff020100")
KU_DIGITAL_SIGNATURE = _ext(KU, "03020780")
KU_KEY_CERT_SIGN = _ext(KU, "03020204")


def _build_cert(
    signer: Ed25519PrivateKey,
    *,
    issuer: bytes,
    subject: bytes,
    spki: bytes,
    extensions: list[bytes] | None,
    serial: int = 4242,
    not_before: int = T0,
    not_after: int = T0 + 30 * DAY,
    version: int | None = 2,
    algorithm: bytes = ED25519_ALGORITHM,
    outer_algorithm: bytes | None = None,
) -> bytes:
    fields = (
        [] if version is None else [der.encode_explicit(0, der.encode_integer(version))]
    )
    fields += [
        der.encode_integer(serial),
        algorithm,
        issuer,
        der.encode_sequence(der.encode_time(not_before), der.encode_time(not_after)),
        subject,
        spki,
    ]
    if extensions is not None:
        fields.append(der.encode_explicit(3, der.encode_sequence(*extensions)))
    tbs = der.encode_sequence(*fields)
    signature = der.encode_bit_string(signer.sign(tbs))
    return der.encode_sequence(tbs, outer_algorithm or algorithm, signature)


def _canonical(element: der.Element) -> bytes:
    """Re-encode an element minimally (INTEGERs, OIDs, nested DER in OCTET STRINGs)."""
    if element.is_constructed:
        inner = b"".join(_canonical(child) for child in element.children())
        return der.encode_tlv(element.tag, inner)
    if element.tag == der.INTEGER:
        return der.encode_integer(int.from_bytes(element.value, "big", signed=True))
    if element.tag == der.BOOLEAN:
        return der.encode_boolean(element.value != b"\x00")
    if element.tag == der.OID:
        return der.encode_oid(der.decode_oid(element))
    if element.tag == der.OCTET_STRING:
        try:
            nested = der.read(element.value)
        except DERError:
            return element.encoded
        return der.encode_octet_string(_canonical(nested))
    return element.encoded


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def root_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def root(root_key: Ed25519PrivateKey) -> IDCert:
    return certs.load_server_cert(
        issuing.build_server_cert(
            root_key,
            "example.com",
            serial_number=issuing.new_serial_number(),
            not_valid_before=T0,
            not_valid_after=T0 + YEAR,
        )
    )


@pytest.fixture
def actor_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def csr(actor_key: Ed25519PrivateKey) -> CSR:
    return certs.load_csr(
        _build_csr(actor_key, _name(*_actor_avas())), domain="example.com"
    )


@pytest.fixture
def actor_cert(csr: CSR, root_key: Ed25519PrivateKey, root: IDCert) -> IDCert:
    der_bytes = issuing.issue_actor_cert(
        csr,
        issuer_key=root_key,
        issuer_cert=root,
        serial_number=issuing.new_serial_number(),
        not_valid_before=T0 + DAY,
        not_valid_after=T0 + 31 * DAY,
    )
    return certs.load_id_cert(der_bytes)


DIGITAL_SIGNATURE_ONLY = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _cryptography_csr(key: Ed25519PrivateKey) -> bytes:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "com"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
            x509.NameAttribute(NameOID.USER_ID, "alice@example.com"),
            x509.NameAttribute(x509.ObjectIdentifier(UNIQUE_IDENTIFIER_OID), "s-1"),
        ]
    )
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(DIGITAL_SIGNATURE_ONLY, critical=True)
    )
    return builder.sign(key, None).public_bytes(Encoding.DER)


# --- input encodings -----------------------------------------------------------------


def _encodings(data: bytes) -> list[str | bytes]:
    b64 = base64.b64encode(data).decode()
    pem = certs.der_to_pem(data, "CERTIFICATE REQUEST")
    return [
        b64,
        base64.urlsafe_b64encode(data).decode(),
        b64.rstrip("="),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76)),
        f"  {b64}\r\n",
        pem,
        pem.replace("\n", "\r\n"),
        certs.der_to_pem(data, "NEW CERTIFICATE REQUEST"),
        base64.b64encode(pem.encode()).decode(),
        b64.encode(),
        pem.encode(),
        data,
    ]


def test_decode_cert_input_accepts_every_encoding(actor_key: Ed25519PrivateKey) -> None:
    data = _build_csr(actor_key, _name(*_actor_avas()))

    for encoded in _encodings(data):
        assert certs.decode_cert_input(encoded) == data


def test_decode_cert_input_accepts_pem_certificate(actor_cert: IDCert) -> None:
    pem = certs.der_to_pem(actor_cert.der)

    assert pem.startswith("-----BEGIN CERTIFICATE-----\n")
    assert pem.endswith("-----END CERTIFICATE-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert certs.decode_cert_input(pem) == actor_cert.der


def test_der_to_base64_uses_standard_padded_alphabet() -> None:
    assert certs.der_to_base64(b"\xfb\xff") == "+/8="


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("not base64!", "neither base64 nor pem"),
        ("MAA=A", "neither base64 nor pem"),
        ("QUJD", "not a der sequence"),
        ("A", "impossible base64 length"),
        ("MAM=", "not a der sequence"),
        ("-----BEGIN CERTIFICATE-----\nMAA=\n", "no complete begin/end block"),
        (
            "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n",
            "pem label 'PRIVATE KEY'",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END X509 CRL-----\n",
            "does not match end",
        ),
        ("-----BEGIN CERTIFICATE-----\nM!A=\n-----END CERTIFICATE-----\n", "pem body"),
        (b"\xff\xfe\x00", "not a der sequence"),
    ],
)
def test_decode_cert_input_rejects_garbage(text: str | bytes, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        certs.decode_cert_input(text)


def test_decode_cert_input_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="expected str or bytes, got int"):
        certs.decode_cert_input(5)  # type: ignore[arg-type]


# --- CSRs: accepted ------------------------------------------------------------------


def test_actor_name_fid_joins_local_name_and_domain() -> None:
    assert ActorName("alice", "example.com", "s").fid == "alice@example.com"


@requires_openssl
@pytest.mark.parametrize(
    "subject",
    [
        GOOD_SUBJECT,
        "/DC=com/DC=example/CN=alice/UID=alice@example.com"
        "/0.9.2342.19200300.100.1.44=sess1",
        "/0.9.2342.19200300.100.1.44=sess1/UID=alice@example.com"
        "/DC=com/DC=example/CN=alice",
        "/CN=Alice/DC=COM/DC=Example/UID=ALICE@example.COM/uniqueIdentifier=sess1",
        GOOD_SUBJECT + "/O=Example Org/C=DE",
    ],
)
def test_load_csr_accepts_openssl_csr(tmp_path: Path, subject: str) -> None:
    data = _openssl_csr(tmp_path, subject)

    loaded = certs.load_csr(data, domain="example.com")

    assert loaded.subject == ActorName("alice", "example.com", "sess1")
    assert loaded.subject.fid == "alice@example.com"
    assert loaded.der == data
    assert len(loaded.public_key) == 32
    assert loaded.subject_der in data


@requires_openssl
def test_load_csr_accepts_printable_and_t61_strings(tmp_path: Path) -> None:
    # string_mask=default makes openssl write PrintableString and T61String.
    data = _openssl_csr(tmp_path, string_mask="default")
    subject = der.read(data).children()[0].children()[1]
    tags = {child.children()[0].children()[1].tag for child in subject.children()}

    loaded = certs.load_csr(data, domain="example.com")

    assert {der.PRINTABLE_STRING, der.T61_STRING} <= tags
    assert loaded.subject == ActorName("alice", "example.com", "sess1")


def test_load_csr_accepts_printable_string_uid(actor_key: Ed25519PrivateKey) -> None:
    avas = _actor_avas()
    avas[3] = (UID_OID, der.encode_printable_string("alice@example.com"))

    loaded = certs.load_csr(_build_csr(actor_key, _name(*avas)), domain="example.com")

    assert loaded.subject.fid == "alice@example.com"


def test_load_csr_accepts_cryptography_csr(actor_key: Ed25519PrivateKey) -> None:
    loaded = certs.load_csr(_cryptography_csr(actor_key), domain="example.com")

    assert loaded.subject == ActorName("alice", "example.com", "s-1")


def test_load_csr_accepts_single_label_domain(actor_key: Ed25519PrivateKey) -> None:
    data = _build_csr(actor_key, _name(*_actor_avas(labels=("localhost",))))

    loaded = certs.load_csr(data, domain="localhost")

    assert loaded.subject.fid == "alice@localhost"


def test_load_csr_accepts_deep_domain_and_32_char_session(
    actor_key: Ed25519PrivateKey,
) -> None:
    avas = _actor_avas(labels=("org", "example", "chat"), session_id="~" * 32)

    loaded = certs.load_csr(
        _build_csr(actor_key, _name(*avas)), domain="chat.example.org"
    )

    assert loaded.subject == ActorName("alice", "chat.example.org", "~" * 32)


@requires_openssl
def test_load_csr_ignores_unknown_requested_extensions(
    tmp_path: Path, root_key: Ed25519PrivateKey, root: IDCert
) -> None:
    extra = (
        "-addext",
        "subjectAltName=DNS:alice.example.com",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment",
    )
    loaded = certs.load_csr(_openssl_csr(tmp_path, extra=extra), domain="example.com")

    issued = issuing.issue_actor_cert(
        loaded,
        issuer_key=root_key,
        issuer_cert=root,
        serial_number=7,
        not_valid_before=T0,
        not_valid_after=T0 + DAY,
    )

    oids = [
        ext.oid.dotted_string
        for ext in x509.load_der_x509_certificate(issued).extensions
    ]
    assert oids == [BC, KU]


# --- CSRs: refused -------------------------------------------------------------------


@requires_openssl
@pytest.mark.parametrize(
    ("subject", "extra", "match"),
    [
        (
            "/CN=alice/DC=com/DC=example/UID=alice@example.com/x500UniqueIdentifier=s1",
            (),
            r"no uniqueidentifier \(0\.9\.2342\.19200300\.100\.1\.44\).*"
            r"2\.5\.4\.45 is the wrong oid",
        ),
        (
            "/CN=alice/DC=com/DC=example/UID=alice@example.com",
            (),
            "subject has no uniqueidentifier",
        ),
        (
            "/CN=alice/DC=com/DC=example/UID=alice@example.com/uniqueIdentifier="
            + "s" * 33,
            (),
            "session id 's{33}' must be 1 to 32 ia5 characters",
        ),
        (
            "/CN=alice/DC=com/DC=example/UID=bob@example.com/uniqueIdentifier=s1",
            (),
            r"uid 'bob@example\.com' does not match cn and dc components",
        ),
        (
            "/CN=alice/DC=com/DC=example/UID=alice@other.org/uniqueIdentifier=s1",
            (),
            r"uid 'alice@other\.org' does not match",
        ),
        (
            "/CN=alice/DC=com/DC=example/UID=alice/uniqueIdentifier=s1",
            (),
            "uid 'alice' does not match",
        ),
        (
            "/CN=alice/DC=example/DC=com/UID=alice@example.com/uniqueIdentifier=s1",
            (),
            r"dc components are in the wrong order \('com\.example'\)",
        ),
        (
            "/CN=alice/DC=org/DC=other/UID=alice@other.org/uniqueIdentifier=s1",
            (),
            r"dc components spell 'other\.org', expected 'example\.com'",
        ),
        (
            "/CN=alice/DC=com/DC=example/DC=www/UID=alice@www.example.com"
            "/uniqueIdentifier=s1",
            (),
            r"dc components spell 'www\.example\.com'",
        ),
        (
            "/CN=alice/CN=bob/DC=com/DC=example/UID=alice@example.com"
            "/uniqueIdentifier=s1",
            (),
            "subject has 2 cn attributes, expected one",
        ),
        (
            "/DC=com/DC=example/UID=alice@example.com/uniqueIdentifier=s1",
            (),
            "subject has no cn",
        ),
        (
            "/CN=al ice/DC=com/DC=example/UID=al ice@example.com/uniqueIdentifier=s1",
            (),
            "cn 'al ice' is not a valid local name",
        ),
        (
            "/CN=alice/UID=alice@example.com/uniqueIdentifier=s1",
            (),
            "subject has no dc components",
        ),
        (
            "/CN=alice/DC=com/DC=example/uniqueIdentifier=s1",
            (),
            r"subject has no uid \(0\.9\.2342\.19200300\.100\.1\.1\)",
        ),
        (
            "/CN=alice/DC=com/DC=ex_ample/UID=alice@ex_ample.com/uniqueIdentifier=s1",
            (),
            "subject dc 'ex_ample' is not a valid domain label",
        ),
        (
            GOOD_SUBJECT,
            ("-addext", "basicConstraints=critical,CA:TRUE"),
            "csr requests ca=true in basicconstraints",
        ),
        (
            GOOD_SUBJECT,
            ("-addext", "basicConstraints=CA:TRUE,pathlen:0"),
            "csr requests ca=true",
        ),
        (
            GOOD_SUBJECT,
            ("-addext", "keyUsage=critical,digitalSignature,keyCertSign"),
            "csr requests the keycertsign key usage",
        ),
    ],
)
def test_load_csr_rejects_openssl_mistakes(
    tmp_path: Path, subject: str, extra: tuple[str, ...], match: str
) -> None:
    data = _openssl_csr(tmp_path, subject, extra=extra)

    with pytest.raises(InvalidCSR, match=match):
        certs.load_csr(data, domain="example.com")


def test_load_csr_rejects_long_local_name(actor_key: Ed25519PrivateKey) -> None:
    data = _build_csr(actor_key, _name(*_actor_avas("a" * 65)))

    with pytest.raises(InvalidCSR, match="is not a valid local name of 1 to 64"):
        certs.load_csr(data, domain="example.com")


def test_load_csr_rejects_non_ascii_session_id(actor_key: Ed25519PrivateKey) -> None:
    avas = _actor_avas()
    avas[4] = (UNIQUE_IDENTIFIER_OID, der.encode_utf8_string("sess\u00e9"))

    with pytest.raises(InvalidCSR, match="session id 'sessé' must be 1 to 32 ia5"):
        certs.load_csr(_build_csr(actor_key, _name(*avas)), domain="example.com")


def test_load_csr_rejects_non_string_attribute(actor_key: Ed25519PrivateKey) -> None:
    avas = _actor_avas()
    avas[0] = (CN, der.encode_integer(5))

    with pytest.raises(InvalidCSR, match="cn value is not a readable string"):
        certs.load_csr(_build_csr(actor_key, _name(*avas)), domain="example.com")


@requires_openssl
@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("rsa", r"public key algorithm 'rsa \(1\.2\.840\.113549\.1\.1\.1\)'"),
        ("ecdsa", r"public key algorithm 'ecdsa \(1\.2\.840\.10045\.2\.1\)'"),
        ("ed448", r"public key algorithm 'ed448 \(1\.3\.101\.113\)'"),
    ],
)
def test_load_csr_rejects_other_key_algorithms(
    tmp_path: Path, key: str, match: str
) -> None:
    data = _openssl_csr(tmp_path, key=key)

    with pytest.raises(InvalidCSR, match=match + " is not supported, only ed25519"):
        certs.load_csr(data, domain="example.com")


@requires_openssl
def test_load_csr_rejects_broken_signature(tmp_path: Path) -> None:
    data = bytearray(_openssl_csr(tmp_path))
    data[-1] ^= 0x01

    with pytest.raises(InvalidCSR, match="signature does not verify"):
        certs.load_csr(bytes(data), domain="example.com")


@requires_openssl
def test_load_csr_rejects_changed_subject(tmp_path: Path) -> None:
    data = _openssl_csr(tmp_path)
    forged = data.replace(b"sess1", b"sess2")

    with pytest.raises(InvalidCSR, match="signature does not verify"):
        certs.load_csr(forged, domain="example.com")


@requires_openssl
@pytest.mark.parametrize("keep", [0, 1, 2, 10, 100, -64, -1])
def test_load_csr_rejects_truncated_der(tmp_path: Path, keep: int) -> None:
    data = _openssl_csr(tmp_path)

    with pytest.raises(InvalidCSR, match="csr is not valid der"):
        certs.load_csr(data[:keep], domain="example.com")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_load_csr_rejects_random_bytes(seed: int) -> None:
    data = random.Random(seed).randbytes(300)

    with pytest.raises(InvalidCSR, match="csr is not valid der"):
        certs.load_csr(data, domain="example.com")


def test_load_csr_rejects_certificate(actor_cert: IDCert) -> None:
    with pytest.raises(InvalidCSR, match="csr is not valid der"):
        certs.load_csr(actor_cert.der, domain="example.com")


@pytest.mark.parametrize(
    ("attribute", "match"),
    [
        (_attribute(BC, bytes.fromhex("30030101ff")), "csr requests ca=true"),
        (_attribute(KU, bytes.fromhex("03020504")), "requests the keycertsign"),
        (_attribute(KU, bytes.fromhex("03020204")), "requests the keycertsign"),
        (
            _attribute(BC, bytes.fromhex("3006020100010100")),
            "requested basicconstraints is malformed: unexpected boolean",
        ),
        (
            _attribute(KU, bytes.fromhex("0404deadbeef")),
            "requested keyusage is malformed: expected bit string",
        ),
        (
            _attribute(EXTENSION_REQUEST, der.encode_sequence(_ext(BC, "3003010101"))),
            "requested basicconstraints is malformed: boolean contents",
        ),
        (
            _attribute(EXTENSION_REQUEST, der.encode_sequence(_ext(KU, "0400"))),
            "requested keyusage is malformed",
        ),
        (
            _attribute(EXTENSION_REQUEST, der.encode_integer(1)),
            "csr attributes are malformed: expected sequence",
        ),
        (der.encode_sequence(der.encode_oid(BC)), "csr attributes are malformed"),
    ],
)
def test_load_csr_rejects_requested_ca_rights(
    actor_key: Ed25519PrivateKey, attribute: bytes, match: str
) -> None:
    data = _build_csr(actor_key, _name(*_actor_avas()), (attribute,))

    with pytest.raises(InvalidCSR, match=match):
        certs.load_csr(data, domain="example.com")


@pytest.mark.parametrize(
    ("domain", "error", "match"),
    [
        ("exa mple.com", ValueError, "domain 'exa mple.com' is not a valid domain"),
        ("", ValueError, "domain '' is not a valid domain"),
        ("example.com.", ValueError, "is not a valid domain"),
        (b"example.com", TypeError, "domain must be str, got bytes"),
    ],
)
def test_load_csr_rejects_bad_domain_argument(
    csr: CSR, domain: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        certs.load_csr(csr.der, domain=domain)


# --- polyproto-rs vectors ------------------------------------------------------------


def _vector(name: str) -> bytes:
    return (DATA / "polyproto_rs" / name).read_bytes()


def test_polyproto_rs_vectors_match_their_generator() -> None:
    for name, data in make_vectors.build_vectors().items():
        assert _vector(name) == data, f"regenerate {name} with make_vectors.py"


def test_polyproto_rs_vectors_defeat_cryptography() -> None:
    # Why the project parses DER itself: cryptography refuses these extensions
    # and does not see capabilities stored as plain CSR attributes.
    for name in ("server_cert.der", "actor_cert.der"):
        cert = x509.load_der_x509_certificate(_vector(name))
        with pytest.raises(ValueError, match="error parsing asn1 value"):
            _ = cert.extensions
    request = x509.load_der_x509_csr(_vector("actor_csr.der"))
    assert len(request.extensions) == 0


def test_load_csr_accepts_polyproto_rs_csr() -> None:
    loaded = certs.load_csr(_vector("actor_csr.der"), domain="polyphony.chat")

    assert loaded.subject == ActorName("flori", "polyphony.chat", "client1")


def test_load_server_cert_accepts_polyproto_rs_root() -> None:
    root = certs.load_server_cert(_vector("server_cert.der"))

    assert root.is_ca
    assert root.subject is None
    assert root.issuer_domain == "polyphony.chat"
    assert root.serial_number == make_vectors.SERVER_SERIAL


def test_load_id_cert_accepts_polyproto_rs_actor_cert() -> None:
    root = certs.load_server_cert(_vector("server_cert.der"))
    cert = certs.load_id_cert(_vector("actor_cert.der"))

    certs.check_actor_cert_for(cert, issuer=root, now=T0 + DAY)

    assert cert.subject == ActorName("flori", "polyphony.chat", "client1")
    assert not cert.is_ca
    assert cert.not_valid_before == make_vectors.NOT_BEFORE
    assert cert.not_valid_after == make_vectors.ACTOR_NOT_AFTER


def test_issue_actor_cert_from_polyproto_rs_csr_is_minimal_der() -> None:
    root_key = Ed25519PrivateKey.from_private_bytes(make_vectors.SERVER_SEED)
    root = certs.load_server_cert(_vector("server_cert.der"))
    loaded = certs.load_csr(_vector("actor_csr.der"), domain="polyphony.chat")

    issued = issuing.issue_actor_cert(
        loaded,
        issuer_key=root_key,
        issuer_cert=root,
        serial_number=99,
        not_valid_before=T0,
        not_valid_after=T0 + 30 * DAY,
    )

    parsed = x509.load_der_x509_certificate(issued)
    assert [(ext.oid.dotted_string, ext.critical) for ext in parsed.extensions] == [
        (BC, True),
        (KU, True),
    ]
    assert parsed.extensions[0].value == x509.BasicConstraints(
        ca=False, path_length=None
    )
    assert parsed.extensions[1].value == DIGITAL_SIGNATURE_ONLY
    assert parsed.extensions[0].value.public_bytes() == b"\x30\x00"
    assert parsed.extensions[1].value.public_bytes() == b"\x03\x02\x07\x80"
    assert parsed.subject.public_bytes() == loaded.subject_der
    assert _canonical(der.read(issued)) == issued
    assert _canonical(der.read(_vector("actor_cert.der"))) != _vector("actor_cert.der")
    certs.check_actor_cert_for(certs.load_id_cert(issued), issuer=root, now=T0 + 1)


# --- issuing -------------------------------------------------------------------------


@requires_openssl
def test_build_server_cert_parses_with_openssl(root: IDCert) -> None:
    text = _openssl_text(root.der)

    assert "Version: 3 (0x2)" in text
    assert "Signature Algorithm: ED25519" in text
    assert "Public Key Algorithm: ED25519" in text
    assert "Issuer: DC = com, DC = example" in text
    assert "Subject: DC = com, DC = example" in text
    assert (
        "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0" in text
    )
    assert "X509v3 Key Usage: critical\n                Certificate Sign" in text


def test_build_server_cert_is_minimal_and_readable_by_cryptography(
    root: IDCert,
) -> None:
    parsed = x509.load_der_x509_certificate(root.der)

    assert _canonical(der.read(root.der)) == root.der
    assert parsed.extensions[0].value == x509.BasicConstraints(ca=True, path_length=0)
    assert parsed.extensions[0].critical
    assert parsed.extensions[1].value.key_cert_sign
    assert parsed.extensions[1].critical
    assert len(parsed.extensions) == 2
    assert parsed.issuer == parsed.subject
    assert root.issuer_der == root.subject_der
    root.verify_signed_by(root.public_key)


def test_build_server_cert_writes_dcs_most_significant_first(
    root_key: Ed25519PrivateKey,
) -> None:
    data = issuing.build_server_cert(
        root_key,
        "Chat.Example.ORG",
        serial_number=1,
        not_valid_before=T0,
        not_valid_after=T0,
    )

    cert = certs.load_server_cert(data)

    assert cert.subject_der == _server_name("org", "example", "chat")
    assert cert.issuer_domain == "chat.example.org"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"domain": "exa mple.com"}, "domain 'exa mple.com' is not a valid domain"),
        ({"serial_number": 0}, "serial number 0 is out of range"),
        ({"serial_number": 2**159}, "serial number .* is out of range"),
        ({"not_valid_after": T0 - 1}, "validity 1700000000..1699999999 is empty"),
        ({"not_valid_after": 10**12}, "cannot be encoded"),
    ],
)
def test_build_server_cert_rejects_bad_arguments(
    root_key: Ed25519PrivateKey, kwargs: dict[str, Any], match: str
) -> None:
    arguments: dict[str, Any] = {
        "domain": "example.com",
        "serial_number": 1,
        "not_valid_before": T0,
        "not_valid_after": T0 + DAY,
    }
    arguments.update(kwargs)

    with pytest.raises(ValueError, match=match):
        issuing.build_server_cert(root_key, **arguments)


def test_build_server_cert_rejects_other_key_types() -> None:
    with pytest.raises(TypeError, match="expected an Ed25519PrivateKey, got str"):
        issuing.build_server_cert(
            "key",  # type: ignore[arg-type]
            "example.com",
            serial_number=1,
            not_valid_before=T0,
            not_valid_after=T0,
        )


@requires_openssl
def test_issue_actor_cert_parses_with_openssl(
    tmp_path: Path, root_key: Ed25519PrivateKey, root: IDCert
) -> None:
    loaded = certs.load_csr(_openssl_csr(tmp_path), domain="example.com")
    issued = issuing.issue_actor_cert(
        loaded,
        issuer_key=root_key,
        issuer_cert=root,
        serial_number=issuing.new_serial_number(),
        not_valid_before=T0,
        not_valid_after=T0 + 30 * DAY,
    )

    text = _openssl_text(issued)

    assert "Signature Algorithm: ED25519" in text
    assert "Public Key Algorithm: ED25519" in text
    assert "Issuer: DC = com, DC = example" in text
    assert "UID = alice@example.com" in text
    assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text


def test_issue_actor_cert_copies_issuer_and_subject_bytes(
    root_key: Ed25519PrivateKey, root: IDCert, actor_key: Ed25519PrivateKey
) -> None:
    # A root whose subject uses UTF8String DCs: the issuer must be these exact
    # bytes, never a re-encoding of "DC=com,DC=example".
    name = _name(
        (DC, der.encode_utf8_string("com")), (DC, der.encode_utf8_string("example"))
    )
    spki = _spki(root_key)
    odd_root = certs.load_server_cert(
        _build_cert(
            root_key,
            issuer=name,
            subject=name,
            spki=spki,
            extensions=[BC_ROOT, KU_KEY_CERT_SIGN],
            not_after=T0 + YEAR,
        )
    )
    avas = _actor_avas()
    avas[3] = (UID_OID, der.encode_printable_string("alice@example.com"))
    loaded = certs.load_csr(_build_csr(actor_key, _name(*avas)), domain="example.com")

    issued = certs.load_id_cert(
        issuing.issue_actor_cert(
            loaded,
            issuer_key=root_key,
            issuer_cert=odd_root,
            serial_number=5,
            not_valid_before=T0,
            not_valid_after=T0 + DAY,
        )
    )

    assert issued.issuer_der == odd_root.subject_der == name
    assert issued.subject_der == loaded.subject_der
    assert issued.public_key == actor_key.public_key().public_bytes_raw()
    assert issued.serial_number == 5
    certs.check_actor_cert_for(issued, issuer=odd_root, now=T0)


def test_issue_actor_cert_matches_root_subject(
    actor_cert: IDCert, root: IDCert
) -> None:
    parsed = x509.load_der_x509_certificate(actor_cert.der)

    assert actor_cert.issuer_der == root.subject_der
    assert parsed.issuer.public_bytes() == root.subject_der
    assert actor_cert.issuer_domain == "example.com"
    assert actor_cert.subject == ActorName("alice", "example.com", "sess1")
    assert _canonical(der.read(actor_cert.der)) == actor_cert.der


def test_issue_actor_cert_caps_not_after_at_issuer(
    csr: CSR, root_key: Ed25519PrivateKey, root: IDCert
) -> None:
    issued = certs.load_id_cert(
        issuing.issue_actor_cert(
            csr,
            issuer_key=root_key,
            issuer_cert=root,
            serial_number=1,
            not_valid_before=T0 + YEAR - DAY,
            not_valid_after=T0 + YEAR + 60 * DAY,
        )
    )

    assert issued.not_valid_before == T0 + YEAR - DAY
    assert issued.not_valid_after == root.not_valid_after


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("other issuer key", "issuer key does not belong"),
        ("actor as issuer", "issuer certificate is not a server root"),
        ("csr of another domain", "csr domain 'other.org' is not the issuer domain"),
        ("serial 0", "serial number 0 is out of range"),
        ("serial -1", "serial number -1 is out of range"),
        ("serial 2**159", "serial number .* is out of range"),
        ("before the issuer", "notbefore lies before the issuer"),
        ("after the issuer", "validity .* is empty"),
    ],
)
def test_issue_actor_cert_rejects_bad_arguments(
    csr: CSR,
    root_key: Ed25519PrivateKey,
    root: IDCert,
    actor_cert: IDCert,
    actor_key: Ed25519PrivateKey,
    case: str,
    match: str,
) -> None:
    other_csr = _build_csr(actor_key, _name(*_actor_avas(labels=("org", "other"))))
    changes: dict[str, dict[str, Any]] = {
        "other issuer key": {"issuer_key": Ed25519PrivateKey.generate()},
        "actor as issuer": {"issuer_cert": actor_cert},
        "csr of another domain": {"csr": certs.load_csr(other_csr, domain="other.org")},
        "serial 0": {"serial_number": 0},
        "serial -1": {"serial_number": -1},
        "serial 2**159": {"serial_number": 2**159},
        "before the issuer": {"not_valid_before": T0 - 1},
        "after the issuer": {"not_valid_before": T0 + 2 * YEAR},
    }
    arguments: dict[str, Any] = {
        "csr": csr,
        "issuer_key": root_key,
        "issuer_cert": root,
        "serial_number": 1,
        "not_valid_before": T0,
        "not_valid_after": T0 + DAY,
        **changes[case],
    }

    with pytest.raises(ValueError, match=match):
        issuing.issue_actor_cert(**arguments)


def test_new_serial_number_is_positive_and_at_most_20_octets() -> None:
    serials = {issuing.new_serial_number() for _ in range(500)}

    assert len(serials) == 500
    for serial in serials:
        assert 0 < serial < 2**159
        assert len(der.read(der.encode_integer(serial)).value) <= 20


# --- loading ID-Certs ----------------------------------------------------------------


def test_load_id_cert_reads_fields(actor_cert: IDCert, root: IDCert) -> None:
    assert actor_cert.not_valid_before == T0 + DAY
    assert actor_cert.not_valid_after == T0 + 31 * DAY
    assert actor_cert.tbs == der.read(actor_cert.der).children()[0].encoded
    assert len(actor_cert.signature) == 64
    actor_cert.verify_signed_by(root.public_key)


@pytest.mark.parametrize(
    ("t", "valid"),
    [
        (T0 + DAY - 1, False),
        (T0 + DAY, True),
        (T0 + 31 * DAY, True),
        (T0 + 31 * DAY + 1, False),
    ],
)
def test_id_cert_is_valid_at_includes_both_ends(
    actor_cert: IDCert, t: int, valid: bool
) -> None:
    assert actor_cert.is_valid_at(t) is valid


def test_id_cert_verify_signed_by_rejects_other_key(actor_cert: IDCert) -> None:
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()

    with pytest.raises(InvalidIDCert, match="signature does not verify"):
        actor_cert.verify_signed_by(other)


def test_id_cert_verify_signed_by_rejects_malformed_key(actor_cert: IDCert) -> None:
    with pytest.raises(InvalidIDCert, match="not a valid ed25519 key"):
        actor_cert.verify_signed_by(b"\x00" * 31)


def test_load_id_cert_accepts_cryptography_built_cert(
    root_key: Ed25519PrivateKey, root: IDCert, actor_key: Ed25519PrivateKey
) -> None:
    request = x509.load_der_x509_csr(_cryptography_csr(actor_key))
    usage = request.extensions.get_extension_for_class(x509.KeyUsage).value
    built = (
        x509.CertificateBuilder()
        .issuer_name(x509.load_der_x509_certificate(root.der).subject)
        .subject_name(request.subject)
        .public_key(request.public_key())
        .serial_number(12345)
        .not_valid_before(x509.load_der_x509_certificate(root.der).not_valid_before_utc)
        .not_valid_after(x509.load_der_x509_certificate(root.der).not_valid_after_utc)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier(b"\x01" * 20), critical=False)
        .sign(root_key, None)
    )
    data = built.public_bytes(Encoding.DER)

    cert = certs.load_id_cert(data)

    certs.check_actor_cert_for(cert, issuer=root, now=T0 + DAY)
    assert cert.subject == ActorName("alice", "example.com", "s-1")


def test_load_id_cert_accepts_content_commitment_without_basic_constraints(
    root_key: Ed25519PrivateKey, actor_key: Ed25519PrivateKey
) -> None:
    data = _build_cert(
        root_key,
        issuer=_server_name("com", "example"),
        subject=_name(*_actor_avas()),
        spki=_spki(actor_key),
        extensions=[_ext(KU, "03020640"), _ext("2.5.29.14", "0400", critical=None)],
    )

    cert = certs.load_id_cert(data)

    assert not cert.is_ca


def _actor_cert_variant(
    root_key: Ed25519PrivateKey, actor_key: Ed25519PrivateKey, **overrides: Any
) -> bytes:
    arguments: dict[str, Any] = {
        "issuer": _server_name("com", "example"),
        "subject": _name(*_actor_avas()),
        "spki": _spki(actor_key),
        "extensions": [BC_ACTOR, KU_DIGITAL_SIGNATURE],
    }
    arguments.update(overrides)
    return _build_cert(root_key, **arguments)


RSA_ALGORITHM = der.encode_sequence(
    der.encode_oid("1.2.840.113549.1.1.11"), der.encode_null()
)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {"extensions": [_ext(BC, "30030101ff"), KU_DIGITAL_SIGNATURE]},
            "actor certificate must not be a ca",
        ),
        (
            {"extensions": [BC_ACTOR, _ext(KU, "03020284")]},
            "actor certificate must not have keycertsign",
        ),
        (
            {"extensions": [BC_ACTOR, _ext(KU, "03020084")]},
            "actor certificate must not have keycertsign",
        ),
        ({"extensions": [BC_ACTOR]}, "actor certificate has no keyusage extension"),
        ({"extensions": None}, "actor certificate has no keyusage extension"),
        (
            {"extensions": [BC_ACTOR, _ext(KU, "03020520")]},
            "needs digitalsignature or contentcommitment",
        ),
        (
            {"extensions": [BC_ACTOR, _ext(KU, "03020780", critical=False)]},
            "keyusage extension must be critical",
        ),
        (
            {"extensions": [_ext(BC, "3000", critical=None), KU_DIGITAL_SIGNATURE]},
            "basicconstraints extension must be critical",
        ),
        (
            {"extensions": [BC_ACTOR, KU_DIGITAL_SIGNATURE, _ext("2.5.29.17", "3000")]},
            r"unknown critical extension '2\.5\.29\.17'",
        ),
        (
            {"extensions": [BC_ACTOR, KU_DIGITAL_SIGNATURE, KU_DIGITAL_SIGNATURE]},
            r"extension '2\.5\.29\.15' appears twice",
        ),
        (
            {"extensions": [BC_ACTOR, _ext(KU, "0304078000ff")]},
            "keyusage is malformed: key usage bit string of 3 octets",
        ),
        (
            {"extensions": [_ext(BC, "30"), KU_DIGITAL_SIGNATURE]},
            "basicconstraints or keyusage is malformed: truncated length",
        ),
        (
            {
                "issuer": _name(
                    (CN, der.encode_utf8_string("root")),
                    (DC, der.encode_ia5_string("com")),
                    (DC, der.encode_ia5_string("example")),
                )
            },
            "issuer must contain only dc components, found 'cn'",
        ),
        ({"issuer": _name()}, "issuer has no dc components"),
        (
            {"issuer": _server_name("org", "other")},
            r"dc components spell 'example\.com', expected 'other\.org'",
        ),
        (
            {"issuer": _server_name("example", "com")},
            r"dc components are in the wrong order \('example\.com'\)",
        ),
        (
            {"subject": _name(*_actor_avas(session_oid=X500_UNIQUE_IDENTIFIER))},
            "2.5.4.45 is the wrong oid for a session id",
        ),
        (
            {"subject": _name(*_actor_avas(session_id=""))},
            "session id '' must be 1 to 32",
        ),
        (
            {"subject": _name(*_actor_avas(uid="mallory@example.com"))},
            "uid 'mallory@example.com' does not match cn and dc components",
        ),
        ({"version": None}, r"not x509 v3 \(version field missing\)"),
        ({"version": 1}, "certificate is not x509 v3"),
        (
            {"algorithm": RSA_ALGORITHM},
            r"signature algorithm 'sha256-with-rsa \(1\.2\.840\.113549\.1\.1\.11\)' "
            "is not supported, only ed25519",
        ),
        (
            {"outer_algorithm": RSA_ALGORITHM},
            "tbs signature algorithm differs from the outer one",
        ),
        (
            {
                "algorithm": der.encode_sequence(
                    der.encode_oid("1.3.101.112"), der.encode_null()
                )
            },
            "signature algorithm ed25519 must not have parameters",
        ),
        (
            {
                "spki": der.encode_sequence(
                    der.encode_sequence(
                        der.encode_oid("1.2.840.10045.2.1"),
                        der.encode_oid("1.2.840.10045.3.1.7"),
                    ),
                    der.encode_bit_string(b"\x04" + b"\x01" * 64),
                )
            },
            r"public key algorithm 'ecdsa \(1\.2\.840\.10045\.2\.1\)' is not supported",
        ),
        (
            {
                "spki": der.encode_sequence(
                    ED25519_ALGORITHM, der.encode_bit_string(b"\x01" * 31)
                )
            },
            "ed25519 public key has 31 octets, expected 32",
        ),
        ({"serial": 0}, "serial number 0 is not positive"),
        ({"serial": -7}, "serial number -7 is not positive"),
        ({"serial": 2**160}, "serial number is longer than 20 octets"),
        ({"serial": 2**170}, "integer of 22 octets is longer than 21"),
        ({"not_after": T0 - 1}, "notafter lies before its notbefore"),
    ],
)
def test_load_id_cert_rejects_rule_breaks(
    root_key: Ed25519PrivateKey,
    actor_key: Ed25519PrivateKey,
    overrides: dict[str, Any],
    match: str,
) -> None:
    data = _actor_cert_variant(root_key, actor_key, **overrides)

    with pytest.raises(InvalidIDCert, match=match):
        certs.load_id_cert(data)


def test_load_id_cert_rejects_root(root: IDCert) -> None:
    with pytest.raises(InvalidIDCert, match="subject has no cn"):
        certs.load_id_cert(root.der)


def test_load_id_cert_rejects_self_signed_actor_cert(
    actor_key: Ed25519PrivateKey,
) -> None:
    name = _name(*_actor_avas())
    data = _actor_cert_variant(actor_key, actor_key, issuer=name)

    with pytest.raises(InvalidIDCert, match="issuer must contain only dc components"):
        certs.load_id_cert(data)


def _with_signature(data: bytes, signature: bytes) -> bytes:
    tbs, algorithm, _ = der.read(data).children()
    return der.encode_sequence(
        tbs.encoded, algorithm.encoded, der.encode_bit_string(signature)
    )


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda data: data + b"\x00", "certificate is not valid der: 1 trailing"),
        (lambda data: data[:-1], "certificate is not valid der: .* runs past"),
        (lambda data: _with_signature(data, b""), "signature has 0 octets"),
        (lambda data: _with_signature(data, b"\x00" * 65), "has 65 octets"),
        (lambda data: b"", "certificate is not valid der: truncated identifier"),
        (lambda data: data[4:], "certificate is not valid der"),
    ],
)
def test_load_id_cert_rejects_broken_der(
    actor_cert: IDCert, mutate: Callable[[bytes], bytes], match: str
) -> None:
    with pytest.raises(InvalidIDCert, match=match):
        certs.load_id_cert(mutate(actor_cert.der))


# --- loading server certs ------------------------------------------------------------


def _root_variant(root_key: Ed25519PrivateKey, **overrides: Any) -> bytes:
    name = _server_name("com", "example")
    arguments: dict[str, Any] = {
        "issuer": name,
        "subject": name,
        "spki": _spki(root_key),
        "extensions": [BC_ROOT, KU_KEY_CERT_SIGN],
        "not_after": T0 + YEAR,
    }
    signer = overrides.pop("signer", root_key)
    arguments.update(overrides)
    return _build_cert(signer, **arguments)


def test_load_server_cert_accepts_extra_key_usages(root_key: Ed25519PrivateKey) -> None:
    data = _root_variant(root_key, extensions=[BC_ROOT, _ext(KU, "03020186")])

    assert certs.load_server_cert(data).is_ca


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (
            {
                "subject": _name(
                    (CN, der.encode_utf8_string("root")),
                    (DC, der.encode_ia5_string("com")),
                )
            },
            "subject must contain only dc components, found 'cn'",
        ),
        ({"subject": _name(), "issuer": _name()}, "subject has no dc components"),
        (
            {
                "subject": _server_name("com", "exa mple"),
                "issuer": _server_name("com", "exa mple"),
            },
            "subject dc 'exa mple' is not a valid domain label",
        ),
        ({"issuer": _server_name("org", "other")}, "issuer differs from its subject"),
        (
            {"extensions": [_ext(BC, "30060101ff020101"), KU_KEY_CERT_SIGN]},
            "root certificate pathlen must be 0, found 1",
        ),
        (
            {"extensions": [_ext(BC, "30030101ff"), KU_KEY_CERT_SIGN]},
            "root certificate pathlen must be 0, found None",
        ),
        (
            {"extensions": [BC_ACTOR, KU_KEY_CERT_SIGN]},
            "must have basicconstraints ca=true",
        ),
        ({"extensions": [KU_KEY_CERT_SIGN]}, "must have basicconstraints ca=true"),
        ({"extensions": [BC_ROOT, KU_DIGITAL_SIGNATURE]}, "must have the keycertsign"),
        ({"extensions": [BC_ROOT]}, "must have the keycertsign"),
        (
            {"extensions": [_ext(BC, "30060101ff020100", False), KU_KEY_CERT_SIGN]},
            "basicconstraints extension must be critical",
        ),
        (
            {"extensions": [BC_ROOT, _ext(KU, "03020204", None)]},
            "keyusage extension must be critical",
        ),
        ({"signer": OTHER_KEY}, "signature does not verify"),
        ({"version": 0}, "certificate is not x509 v3"),
    ],
)
def test_load_server_cert_rejects_rule_breaks(
    root_key: Ed25519PrivateKey, overrides: dict[str, Any], match: str
) -> None:
    data = _root_variant(root_key, **overrides)

    with pytest.raises(InvalidIDCert, match=match):
        certs.load_server_cert(data)


def test_load_server_cert_rejects_actor_cert(actor_cert: IDCert) -> None:
    with pytest.raises(InvalidIDCert, match="subject must contain only dc components"):
        certs.load_server_cert(actor_cert.der)


# --- chain rules ---------------------------------------------------------------------


def test_check_actor_cert_for_accepts_valid_chain(
    actor_cert: IDCert, root: IDCert
) -> None:
    certs.check_actor_cert_for(actor_cert, issuer=root, now=T0 + DAY)
    certs.check_actor_cert_for(actor_cert, issuer=root, now=T0 + 31 * DAY)


def test_check_actor_cert_for_accepts_reencoded_issuer_name(
    root_key: Ed25519PrivateKey, root: IDCert, actor_key: Ed25519PrivateKey
) -> None:
    issuer = _name(
        (DC, der.encode_utf8_string("COM")), (DC, der.encode_utf8_string("example"))
    )
    cert = certs.load_id_cert(_actor_cert_variant(root_key, actor_key, issuer=issuer))

    certs.check_actor_cert_for(cert, issuer=root, now=T0)


def test_check_actor_cert_for_rejects_actor_as_issuer(actor_cert: IDCert) -> None:
    with pytest.raises(InvalidIDCert, match="issuer is not a valid root certificate"):
        certs.check_actor_cert_for(actor_cert, issuer=actor_cert, now=T0 + DAY)


def test_check_actor_cert_for_rejects_root_as_actor(root: IDCert) -> None:
    with pytest.raises(InvalidIDCert, match="certificate is not an actor certificate"):
        certs.check_actor_cert_for(root, issuer=root, now=T0 + DAY)


def test_check_actor_cert_for_rejects_self_signed_actor_cert(
    root: IDCert, actor_key: Ed25519PrivateKey
) -> None:
    # Issuer name of the real root, but signed with the actor's own key.
    cert = certs.load_id_cert(_actor_cert_variant(actor_key, actor_key))

    with pytest.raises(InvalidIDCert, match="signature does not verify"):
        certs.check_actor_cert_for(cert, issuer=root, now=T0 + DAY)


def test_check_actor_cert_for_rejects_issuer_domain_mismatch(
    actor_cert: IDCert, root_key: Ed25519PrivateKey
) -> None:
    other = certs.load_server_cert(
        issuing.build_server_cert(
            root_key,
            "other.org",
            serial_number=1,
            not_valid_before=T0,
            not_valid_after=T0 + YEAR,
        )
    )

    with pytest.raises(
        InvalidIDCert,
        match=r"fid domain 'example\.com' does not match the issuer dcs 'other\.org'",
    ):
        certs.check_actor_cert_for(actor_cert, issuer=other, now=T0 + DAY)


def test_check_actor_cert_for_rejects_other_signing_key(
    actor_cert: IDCert,
) -> None:
    impostor = certs.load_server_cert(
        issuing.build_server_cert(
            Ed25519PrivateKey.generate(),
            "example.com",
            serial_number=1,
            not_valid_before=T0,
            not_valid_after=T0 + YEAR,
        )
    )

    with pytest.raises(InvalidIDCert, match="signature does not verify"):
        certs.check_actor_cert_for(actor_cert, issuer=impostor, now=T0 + DAY)


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (T0 + 31 * DAY + 1, "certificate has expired at"),
        (T0 + YEAR + 1, "certificate has expired"),
        (T0 + DAY - 1, "certificate is not yet valid at"),
        (0, "certificate is not yet valid"),
    ],
)
def test_check_actor_cert_for_rejects_time_outside_validity(
    actor_cert: IDCert, root: IDCert, now: int, match: str
) -> None:
    with pytest.raises(InvalidIDCert, match=match):
        certs.check_actor_cert_for(actor_cert, issuer=root, now=now)


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [(T0 - 1, T0 + DAY), (T0, T0 + YEAR + 1)],
)
def test_check_actor_cert_for_rejects_validity_outside_issuer(
    root_key: Ed25519PrivateKey,
    root: IDCert,
    actor_key: Ed25519PrivateKey,
    not_before: int,
    not_after: int,
) -> None:
    cert = certs.load_id_cert(
        _actor_cert_variant(
            root_key, actor_key, not_before=not_before, not_after=not_after
        )
    )

    with pytest.raises(
        InvalidIDCert, match="validity lies outside the issuer's validity"
    ):
        certs.check_actor_cert_for(cert, issuer=root, now=T0 + 1)


# --- robustness ----------------------------------------------------------------------


def _mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    out: list[bytes] = []
    for _ in range(count):
        mutated = bytearray(data)
        choice = rng.randrange(5)
        if choice == 0:
            for _ in range(rng.randint(1, 3)):
                mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        elif choice == 1:
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        elif choice == 2:
            mutated = mutated[: rng.randrange(len(mutated))]
        elif choice == 3:
            position = rng.randrange(len(mutated))
            mutated[position:position] = rng.randbytes(rng.randint(1, 4))
        else:
            start = rng.randrange(len(mutated))
            del mutated[start : start + rng.randint(1, 8)]
        out.append(bytes(mutated))
    return out


def test_loaders_fuzz_raise_only_certificate_error(
    actor_key: Ed25519PrivateKey, actor_cert: IDCert, root: IDCert
) -> None:
    rng = random.Random(424242)
    inputs = [
        _cryptography_csr(actor_key),
        _vector("actor_csr.der"),
        actor_cert.der,
        root.der,
        _vector("actor_cert.der"),
        _vector("server_cert.der"),
    ]
    loaders: list[Callable[[bytes], object]] = [
        lambda data: certs.load_csr(data, domain="example.com"),
        certs.load_id_cert,
        certs.load_server_cert,
    ]
    for data in inputs:
        for mutated in _mutations(data, rng, 2000):
            for loader in loaders:
                with contextlib.suppress(CertificateError):
                    loader(mutated)
