"""Names of actors and servers: local names, domains and FIDs (PROTOCOL.md section 3).

They compare case-insensitively and are kept lower-case; only ASCII qualifies,
checked before lower-casing (so that no Unicode character folds into a name).
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["is_domain", "is_fid", "is_local_name", "split_fid"]

_LOCAL_NAME: Final = re.compile(r"[a-z0-9._%+-]{1,64}", re.ASCII)
_DOMAIN: Final = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*", re.ASCII)
MAX_DOMAIN: Final = 253


def is_local_name(name: str) -> bool:
    """1 to 64 of ``a-z 0-9 . _ % + -`` (lower-case already)."""
    return name.isascii() and _LOCAL_NAME.fullmatch(name) is not None


def is_domain(domain: str) -> bool:
    """Dot-separated labels of ``a-z 0-9 -`` (lower-case already)."""
    return (
        domain.isascii()
        and len(domain) <= MAX_DOMAIN
        and _DOMAIN.fullmatch(domain) is not None
    )


def split_fid(user_id: str, default_domain: str) -> tuple[str, str] | None:
    """Lower-cased (local name, domain) of an FID or bare local name, or None."""
    if not user_id.isascii():
        return None
    local, at, domain = user_id.lower().partition("@")
    if not at:
        domain = default_domain
    if not is_local_name(local) or not is_domain(domain):
        return None
    return local, domain


def is_fid(fid: str) -> bool:
    """``local@domain`` in any case."""
    return "@" in fid and split_fid(fid, "") is not None
