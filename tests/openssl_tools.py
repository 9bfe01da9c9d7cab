"""Keys and CSRs made by the ``openssl`` command, a tool nobody here wrote."""

from __future__ import annotations

import subprocess
from pathlib import Path

_KEY_ARGS = {
    "ed25519": ["-algorithm", "ed25519"],
    "ed448": ["-algorithm", "ed448"],
    "rsa": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "ecdsa": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
}


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    """Run ``openssl`` and return its standard output; fail the test on an error."""
    result = subprocess.run(
        ["openssl", *args], input=stdin, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


GOOD_SUBJECT = (
    "/CN=alice/DC=com/DC=example/UID=alice@example.com/uniqueIdentifier=sess1"
)


def openssl_csr(
    tmp_path: Path,
    subject: str = GOOD_SUBJECT,
    *,
    key: str = "ed25519",
    extra: tuple[str, ...] = (),
    string_mask: str | None = None,
) -> bytes:
    """A DER CSR for ``subject`` by ``openssl req``, its key kept in ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    key_path = tmp_path / f"{key}.pem"
    if not key_path.exists():
        openssl("genpkey", *_KEY_ARGS[key], "-out", str(key_path))
    args = ["req", "-new", "-key", str(key_path), "-subj", subject, "-outform", "DER"]
    if string_mask is not None:
        config = tmp_path / "req.cnf"
        config.write_text(
            "[ req ]\ndistinguished_name = dn\nprompt = no\n"
            f"string_mask = {string_mask}\n[ dn ]\n"
        )
        args += ["-config", str(config)]
    return openssl(*args, *extra)
