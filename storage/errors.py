"""Exceptions of the storage layer; none of them knows about HTTP."""

from __future__ import annotations

__all__ = [
    "ActorExists",
    "DatabaseUnusable",
    "InitKeyTaken",
    "SessionIDTaken",
    "StorageError",
]


class StorageError(Exception):
    """Root of every storage exception."""


class DatabaseUnusable(StorageError):
    """The database file cannot be opened, is corrupt or is newer than this code."""


class ActorExists(StorageError):
    """An actor with this local name is already registered."""

    def __init__(self, local_name: str) -> None:
        super().__init__(f"actor {local_name!r} already exists")
        self.local_name = local_name


class SessionIDTaken(StorageError):
    """A live session of the actor already uses this session ID."""

    def __init__(self, fid: str, session_id: str) -> None:
        super().__init__(f"session id {session_id!r} of {fid!r} is in use")
        self.fid = fid
        self.session_id = session_id


class InitKeyTaken(StorageError):
    """A KeyPackage with this init_key is already stored on this server."""
