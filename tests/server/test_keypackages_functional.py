"""End-to-end tests of the KeyPackage routes (PROTOCOL.md sections 5, 6 and 9)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.client import P2Client, Reply, SessionKey
from server.config import Config
from tests.conftest import DOMAIN, PASSWORD, FakeClock, make_config
from tests.mls_helpers import (
    encode_keypackage,
    make_keypackage,
    wrap_in_mlsmessage,
    x25519_public_key,
)

NewSession = Callable[..., Any]
DAY = 24 * 3600


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def upload(client: P2Client, session: SessionKey, packages: list[bytes]) -> Reply:
    return await client.request(
        "POST",
        "/p2core/keypackage/@me",
        json=[b64(p) for p in packages],
        token=session.token,
    )


async def put_last_resort(
    client: P2Client, session: SessionKey, package: bytes
) -> Reply:
    return await client.request(
        "PUT", "/p2core/keypackage_lr", json=b64(package), token=session.token
    )


async def claim(client: P2Client, user_id: str, token: str) -> list[bytes]:
    reply = await client.request("GET", f"/p2core/keypackage/{user_id}", token=token)
    assert reply.status == 200, reply.data
    assert isinstance(reply.data, list)
    return [base64.b64decode(item, validate=True) for item in reply.data]


async def low_events(client: P2Client, session: SessionKey) -> list[dict[str, Any]]:
    """Take the session's undelivered events; return the ``d`` of the op 14 ones."""
    reply = await client.request("GET", "/p2core/events", token=session.token)
    if reply.status == 409:
        return []
    assert reply.status == 200, reply.data
    found = []
    for frame in reply.data:
        assert frame["n"] == "core"
        assert isinstance(frame["s"], int)
        if frame["op"] == 14:
            found.append(frame["d"])
    return found


def assert_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.data
    assert reply.data["errcode"] == status
    assert reply.data["error"] == code


# --- upload and claim ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cipher_suite", "wrap"), [(1, False), (1, True), (3, False), (3, True)]
)
async def test_keypackage_claim_returns_uploaded_bytes_once(
    client: P2Client, new_session: NewSession, cipher_suite: int, wrap: bool
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    package = make_keypackage(alice.key, cipher_suite=cipher_suite, wrap=wrap)

    reply = await upload(client, alice, [package])
    assert reply.status == 201

    assert await claim(client, "alice", bob.token) == [package]
    assert await claim(client, "alice", bob.token) == []


async def test_keypackage_claim_returns_one_per_session(
    client: P2Client, new_session: NewSession
) -> None:
    s1: SessionKey = await new_session("alice", "s1")
    s2: SessionKey = await new_session("alice", "s2")
    await new_session("alice", "s3")  # holds no KeyPackage
    bob: SessionKey = await new_session("bob")
    first = [make_keypackage(s1.key) for _ in range(2)]
    second = [make_keypackage(s2.key, cipher_suite=3) for _ in range(2)]
    assert (await upload(client, s1, first)).status == 201
    assert (await upload(client, s2, second)).status == 201

    round_one = await claim(client, "alice", bob.token)
    round_two = await claim(client, f"ALICE@{DOMAIN.upper()}", bob.token)

    assert round_one == [first[0], second[0]]
    assert round_two == [first[1], second[1]]
    assert await claim(client, "alice", bob.token) == []


async def test_keypackage_claim_by_owner_consumes_too(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    package = make_keypackage(alice.key)
    assert (await upload(client, alice, [package])).status == 201

    assert await claim(client, "alice", alice.token) == [package]
    assert await claim(client, "alice", alice.token) == []


async def test_keypackage_upload_accepts_urlsafe_unpadded_base64(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    package = make_keypackage(alice.key)
    text = base64.urlsafe_b64encode(package).decode().rstrip("=")

    reply = await client.request(
        "POST", "/p2core/keypackage/@me", json=[text], token=alice.token
    )

    assert reply.status == 201
    assert await claim(client, "alice", bob.token) == [package]


async def test_keypackage_claim_falls_back_to_last_resort_without_consuming(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    regular = make_keypackage(alice.key)
    last_resort = make_keypackage(alice.key, wrap=True)
    assert (await upload(client, alice, [regular])).status == 201

    reply = await put_last_resort(client, alice, last_resort)

    assert reply.status == 204
    assert await claim(client, "alice", bob.token) == [regular]
    assert await claim(client, "alice", bob.token) == [last_resort]
    assert await claim(client, "alice", bob.token) == [last_resort]


async def test_keypackage_last_resort_put_replaces_previous(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    old = make_keypackage(alice.key)
    new = make_keypackage(alice.key, cipher_suite=3)
    assert (await put_last_resort(client, alice, old)).status == 204

    assert (await put_last_resort(client, alice, new)).status == 204
    assert (await put_last_resort(client, alice, new)).status == 204

    assert await claim(client, "alice", bob.token) == [new]
    # The replaced one left the server, so its init_key is free again.
    assert (await upload(client, alice, [old])).status == 201


async def test_keypackage_claim_actor_without_keypackages_returns_empty(
    client: P2Client, new_session: NewSession
) -> None:
    await new_session("alice", "s1")
    await new_session("alice", "s2")
    bob: SessionKey = await new_session("bob")

    reply = await client.request("GET", "/p2core/keypackage/alice", token=bob.token)

    assert reply.status == 200
    assert reply.data == []


@pytest.mark.parametrize("user_id", ["nobody", f"nobody@{DOMAIN}", "alice@other.org"])
async def test_keypackage_claim_unknown_actor_is_not_federated(
    client: P2Client, new_session: NewSession, user_id: str
) -> None:
    alice: SessionKey = await new_session("alice")

    reply = await client.request(
        "GET", f"/p2core/keypackage/{user_id}", token=alice.token
    )

    assert_error(reply, 404, "P2CORE_NOT_FEDERATED")


async def test_keypackage_claim_malformed_user_id_is_bad_request(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")

    reply = await client.request(
        "GET", "/p2core/keypackage/a%20b@@x", token=alice.token
    )

    assert_error(reply, 400, "P2CORE_BAD_REQUEST")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/p2core/keypackage/@me", ["AAAA"]),
        ("PUT", "/p2core/keypackage_lr", "AAAA"),
        ("GET", "/p2core/keypackage/alice", None),
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_keypackage_routes_without_valid_token_are_unauthorized(
    client: P2Client,
    new_session: NewSession,
    method: str,
    path: str,
    body: Any,
    token: str | None,
) -> None:
    await new_session("alice")

    reply = await client.request(method, path, json=body, token=token)

    assert_error(reply, 401, "P2CORE_UNAUTHORIZED")


# --- refusals --------------------------------------------------------------------


async def test_keypackage_batch_with_one_bad_stores_none(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    good = [make_keypackage(alice.key) for _ in range(3)]
    bad = make_keypackage(Ed25519PrivateKey.generate())

    reply = await upload(client, alice, [good[0], good[1], bad, good[2]])

    assert_error(reply, 400, "P2CORE_INVALID_KEYPACKAGE")
    assert await claim(client, "alice", bob.token) == []
    # Nothing of the batch stayed behind: its init_keys are still free.
    assert (await upload(client, alice, good)).status == 201


def _truncated(key: Ed25519PrivateKey) -> Any:
    return b64(make_keypackage(key)[:-10])


def _length_past_end(key: Ed25519PrivateKey) -> Any:
    data = bytearray(make_keypackage(key))
    # The KeyPackage ends with its 64-byte signature after a 2-byte length 0x4040.
    assert data[-66:-64] == b"\x40\x40"
    data[-66:-64] = (0x4000 | 1000).to_bytes(2, "big")
    return b64(bytes(data))


def _trailing_bytes(key: Ed25519PrivateKey) -> Any:
    return b64(make_keypackage(key) + b"\x00")


def _wrong_signature(key: Ed25519PrivateKey) -> Any:
    data = bytearray(make_keypackage(key))
    data[-1] ^= 0x01
    return b64(bytes(data))


def _wrong_leaf_signature(key: Ed25519PrivateKey) -> Any:
    return b64(encode_keypackage(key, leaf_signature=bytes(64)))


def _foreign_key(key: Ed25519PrivateKey) -> Any:
    return b64(make_keypackage(Ed25519PrivateKey.generate()))


def _init_key_is_encryption_key(key: Ed25519PrivateKey) -> Any:
    shared = x25519_public_key()
    return b64(make_keypackage(key, init_key=shared, encryption_key=shared))


def _expired(key: Ed25519PrivateKey) -> Any:
    now = int(time.time())
    return b64(make_keypackage(key, not_before=now - DAY, not_after=now - 60))


def _not_yet_valid(key: Ed25519PrivateKey) -> Any:
    now = int(time.time())
    return b64(make_keypackage(key, not_before=now + DAY, not_after=now + 2 * DAY))


def _unsupported_suite(key: Ed25519PrivateKey) -> Any:
    return b64(make_keypackage(key, cipher_suite=2))


def _wrong_version(key: Ed25519PrivateKey) -> Any:
    return b64(make_keypackage(key, version=2))


def _wrong_wire_format(key: Ed25519PrivateKey) -> Any:
    return b64(wrap_in_mlsmessage(make_keypackage(key), wire_format=1))


def _not_base64(key: Ed25519PrivateKey) -> Any:
    return "this is *not* base64!"


def _empty_string(key: Ed25519PrivateKey) -> Any:
    return ""


def _number(key: Ed25519PrivateKey) -> Any:
    return 42


def _object(key: Ed25519PrivateKey) -> Any:
    return {"keypackage": b64(make_keypackage(key))}


BAD_ITEMS: list[Callable[[Ed25519PrivateKey], Any]] = [
    _truncated,
    _length_past_end,
    _trailing_bytes,
    _wrong_signature,
    _wrong_leaf_signature,
    _foreign_key,
    _init_key_is_encryption_key,
    _expired,
    _not_yet_valid,
    _unsupported_suite,
    _wrong_version,
    _wrong_wire_format,
    _not_base64,
    _empty_string,
    _number,
    _object,
]


@pytest.mark.parametrize("make_item", BAD_ITEMS, ids=lambda f: f.__name__[1:])
async def test_keypackage_upload_rejects_invalid_item(
    client: P2Client,
    new_session: NewSession,
    make_item: Callable[[Ed25519PrivateKey], Any],
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")

    reply = await client.request(
        "POST",
        "/p2core/keypackage/@me",
        json=[make_item(alice.key)],
        token=alice.token,
    )

    assert_error(reply, 400, "P2CORE_INVALID_KEYPACKAGE")
    assert await claim(client, "alice", bob.token) == []


@pytest.mark.parametrize("make_item", BAD_ITEMS, ids=lambda f: f.__name__[1:])
async def test_keypackage_last_resort_rejects_invalid_body(
    client: P2Client,
    new_session: NewSession,
    make_item: Callable[[Ed25519PrivateKey], Any],
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")

    reply = await client.request(
        "PUT", "/p2core/keypackage_lr", json=make_item(alice.key), token=alice.token
    )

    assert_error(reply, 400, "P2CORE_INVALID_KEYPACKAGE")
    assert await claim(client, "alice", bob.token) == []


@pytest.mark.parametrize("body", [{"keypackages": []}, "AAAA", 7, True, []])
async def test_keypackage_upload_rejects_body_not_array(
    client: P2Client, new_session: NewSession, body: Any
) -> None:
    alice: SessionKey = await new_session("alice")

    reply = await client.request(
        "POST", "/p2core/keypackage/@me", json=body, token=alice.token
    )

    assert_error(reply, 400, "P2CORE_INVALID_KEYPACKAGE")


async def test_keypackage_last_resort_rejects_array_body(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    package = make_keypackage(alice.key)

    reply = await client.request(
        "PUT", "/p2core/keypackage_lr", json=[b64(package)], token=alice.token
    )

    assert_error(reply, 400, "P2CORE_INVALID_KEYPACKAGE")


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/p2core/keypackage/@me"), ("PUT", "/p2core/keypackage_lr")],
)
async def test_keypackage_upload_rejects_invalid_json(
    client: P2Client, new_session: NewSession, method: str, path: str
) -> None:
    alice: SessionKey = await new_session("alice")

    reply = await client.request(method, path, body=b"[not json", token=alice.token)

    assert_error(reply, 400, "P2CORE_BAD_REQUEST")


async def test_keypackage_upload_rejects_oversized_batch(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    batch = [make_keypackage(alice.key) for _ in range(101)]

    reply = await upload(client, alice, batch)

    assert_error(reply, 400, "P2CORE_BAD_REQUEST")


async def test_keypackage_upload_rejects_init_key_already_stored(
    client: P2Client, new_session: NewSession
) -> None:
    s1: SessionKey = await new_session("alice", "s1")
    s2: SessionKey = await new_session("alice", "s2")
    carol: SessionKey = await new_session("carol")
    init_key = x25519_public_key()
    first = make_keypackage(s1.key, init_key=init_key)
    assert (await upload(client, s1, [first])).status == 201

    same = await upload(client, s1, [first])
    same_key = await upload(client, s1, [make_keypackage(s1.key, init_key=init_key)])
    other_session = await upload(
        client, s2, [make_keypackage(s2.key, init_key=init_key)]
    )
    other_actor = await upload(
        client, carol, [make_keypackage(carol.key, init_key=init_key)]
    )
    last_resort = await put_last_resort(
        client, s2, make_keypackage(s2.key, init_key=init_key)
    )

    for reply in (same, same_key, other_session, other_actor, last_resort):
        assert_error(reply, 409, "P2CORE_KEYPACKAGE_TAKEN")
    assert await claim(client, "alice", carol.token) == [first]
    assert await claim(client, "carol", s1.token) == []


async def test_keypackage_upload_rejects_init_key_of_a_claimed_one(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    package = make_keypackage(alice.key)
    assert (await upload(client, alice, [package])).status == 201
    assert await claim(client, "alice", bob.token) == [package]

    again = await upload(client, alice, [package])
    as_last_resort = await put_last_resort(client, alice, package)

    assert_error(again, 409, "P2CORE_KEYPACKAGE_TAKEN")
    assert_error(as_last_resort, 409, "P2CORE_KEYPACKAGE_TAKEN")
    assert await claim(client, "alice", bob.token) == []


async def test_keypackage_upload_rejects_init_key_of_a_last_resort(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    init_key = x25519_public_key()
    last_resort = make_keypackage(alice.key, init_key=init_key)
    assert (await put_last_resort(client, alice, last_resort)).status == 204

    reply = await upload(client, alice, [make_keypackage(alice.key, init_key=init_key)])

    assert_error(reply, 409, "P2CORE_KEYPACKAGE_TAKEN")
    assert await claim(client, "alice", bob.token) == [last_resort]


async def test_keypackage_upload_rejects_init_key_repeated_in_batch(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    init_key = x25519_public_key()
    batch = [
        make_keypackage(alice.key),
        make_keypackage(alice.key, init_key=init_key),
        make_keypackage(alice.key, init_key=init_key, cipher_suite=3),
    ]

    reply = await upload(client, alice, batch)

    assert_error(reply, 409, "P2CORE_KEYPACKAGE_TAKEN")
    assert await claim(client, "alice", bob.token) == []


async def test_keypackage_concurrent_uploads_of_one_init_key_store_one(
    client: P2Client, new_session: NewSession
) -> None:
    s1: SessionKey = await new_session("alice", "s1")
    s2: SessionKey = await new_session("alice", "s2")
    bob: SessionKey = await new_session("bob")
    init_key = x25519_public_key()
    first = make_keypackage(s1.key, init_key=init_key)
    second = make_keypackage(s2.key, init_key=init_key)

    replies = await asyncio.gather(
        upload(client, s1, [first]), upload(client, s2, [second])
    )

    assert sorted(r.status for r in replies) == [201, 409]
    assert [r.data["error"] for r in replies if r.status == 409] == [
        "P2CORE_KEYPACKAGE_TAKEN"
    ]
    assert len(await claim(client, "alice", bob.token)) == 1


# --- lifetime and session state ----------------------------------------------------


async def test_keypackage_claim_skips_and_purges_expired(
    client: P2Client, new_session: NewSession, clock: FakeClock
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    init_key = x25519_public_key()
    short = make_keypackage(alice.key, init_key=init_key, not_after=clock.t + 100)
    long = make_keypackage(alice.key)
    assert (await upload(client, alice, [short, long])).status == 201

    clock.advance(101)

    assert await claim(client, "alice", bob.token) == [long]
    assert await claim(client, "alice", bob.token) == []
    # The expired one was deleted, which frees its init_key.
    again = make_keypackage(alice.key, init_key=init_key)
    assert (await upload(client, alice, [again])).status == 201


async def test_keypackage_claim_hands_out_until_not_after(
    client: P2Client, new_session: NewSession, clock: FakeClock
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    package = make_keypackage(alice.key, not_after=clock.t + 100)
    assert (await upload(client, alice, [package])).status == 201

    clock.advance(100)

    assert await claim(client, "alice", bob.token) == [package]


async def test_keypackage_claim_skips_expired_last_resort(
    client: P2Client, new_session: NewSession, clock: FakeClock
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    last_resort = make_keypackage(alice.key, not_after=clock.t + 100)
    assert (await put_last_resort(client, alice, last_resort)).status == 204
    assert await claim(client, "alice", bob.token) == [last_resort]

    clock.advance(101)

    assert await claim(client, "alice", bob.token) == []


async def test_keypackage_claim_skips_session_after_logout(
    client: P2Client, new_session: NewSession
) -> None:
    s1: SessionKey = await new_session("alice", "s1")
    s2: SessionKey = await new_session("alice", "s2")
    bob: SessionKey = await new_session("bob")
    kept = make_keypackage(s2.key)
    assert (await upload(client, s1, [make_keypackage(s1.key)])).status == 201
    assert (await put_last_resort(client, s1, make_keypackage(s1.key))).status == 204
    assert (await upload(client, s2, [kept])).status == 201

    await client.logout(s1)

    assert await claim(client, "alice", bob.token) == [kept]


async def test_keypackage_claim_skips_keys_replaced_by_rotation(
    client: P2Client, new_session: NewSession, clock: FakeClock
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    assert (await upload(client, alice, [make_keypackage(alice.key)])).status == 201
    assert (
        await put_last_resort(client, alice, make_keypackage(alice.key))
    ).status == 204
    clock.advance(10)

    await client.rotate(alice)

    assert await claim(client, "alice", bob.token) == []
    fresh = make_keypackage(alice.key)
    assert (await upload(client, alice, [fresh])).status == 201
    assert await claim(client, "alice", bob.token) == [fresh]


async def test_keypackage_claim_skips_session_with_expired_cert(
    client: P2Client, new_session: NewSession, clock: FakeClock
) -> None:
    alice: SessionKey = await new_session("alice")
    package = make_keypackage(alice.key, not_after=clock.t + 80 * DAY)
    assert (await upload(client, alice, [package])).status == 201

    clock.advance(61 * DAY)  # past the longest possible actor ID-Cert lifetime
    bob: SessionKey = await new_session("bob")

    assert await claim(client, "alice", bob.token) == []


# --- concurrency -----------------------------------------------------------------


async def test_keypackage_concurrent_claims_never_repeat(
    client: P2Client, new_session: NewSession
) -> None:
    s1: SessionKey = await new_session("alice", "s1")
    s2: SessionKey = await new_session("alice", "s2")
    bob: SessionKey = await new_session("bob")
    uploaded = [make_keypackage(s1.key) for _ in range(10)]
    uploaded += [make_keypackage(s2.key, cipher_suite=3) for _ in range(10)]
    assert (await upload(client, s1, uploaded[:10])).status == 201
    assert (await upload(client, s2, uploaded[10:])).status == 201

    results = await asyncio.gather(
        *(claim(client, "alice", bob.token) for _ in range(20))
    )

    handed_out = [package for result in results for package in result]
    assert len(handed_out) == 20
    assert sorted(handed_out) == sorted(uploaded)
    assert all(len(result) in (0, 2) for result in results)


# --- Low KeyPackages event ---------------------------------------------------------


@pytest.fixture
async def low_client(
    tmp_path: Path, start_server: Callable[[Config], Any]
) -> AsyncIterator[P2Client]:
    config = make_config(tmp_path / "low", keypackages={"low_threshold": 2})
    server = await start_server(config)
    async with P2Client(str(server.make_url(""))) as p2:
        yield p2


async def _trusted(client: P2Client, name: str, session_id: str) -> SessionKey:
    if session_id == "s1":
        await client.register(name, PASSWORD)
    return await client.trust(SessionKey(name, DOMAIN, session_id), PASSWORD)


async def test_keypackage_low_event_reaches_owning_session(
    low_client: P2Client,
) -> None:
    client = low_client
    s1 = await _trusted(client, "alice", "s1")
    s2 = await _trusted(client, "alice", "s2")
    bob = await _trusted(client, "bob", "s1")
    assert (
        await upload(client, s1, [make_keypackage(s1.key) for _ in range(3)])
    ).status == 201
    assert (
        await upload(client, s2, [make_keypackage(s2.key) for _ in range(9)])
    ).status == 201
    await low_events(client, s1)  # drop New Session of s2

    await claim(client, "alice", bob.token)  # s1 keeps 2: not low yet
    assert await low_events(client, s1) == []
    await claim(client, "alice", bob.token)  # s1 keeps 1
    assert await low_events(client, s1) == [{"remaining": 1, "last_resort_used": False}]
    await claim(client, "alice", bob.token)  # s1 keeps 0
    assert await low_events(client, s1) == [{"remaining": 0, "last_resort_used": False}]
    assert await low_events(client, s2) == []
    assert await low_events(client, bob) == []


async def test_keypackage_low_event_fires_each_time_last_resort_is_used(
    low_client: P2Client,
) -> None:
    client = low_client
    alice = await _trusted(client, "alice", "s1")
    bob = await _trusted(client, "bob", "s1")
    last_resort = make_keypackage(alice.key)
    assert (await put_last_resort(client, alice, last_resort)).status == 204

    assert await claim(client, "alice", bob.token) == [last_resort]
    assert await claim(client, "alice", bob.token) == [last_resort]

    used = {"remaining": 0, "last_resort_used": True}
    assert await low_events(client, alice) == [used, used]
    assert await low_events(client, bob) == []


async def test_keypackage_low_event_frames_are_numbered(
    low_client: P2Client,
) -> None:
    client = low_client
    alice = await _trusted(client, "alice", "s1")
    bob = await _trusted(client, "bob", "s1")
    assert (await upload(client, alice, [make_keypackage(alice.key)])).status == 201
    await claim(client, "alice", bob.token)
    await claim(client, "alice", bob.token)  # nothing left: no claim, no event

    reply = await client.request("GET", "/p2core/events", token=alice.token)

    assert reply.status == 200
    assert reply.data == [
        {
            "n": "core",
            "op": 14,
            "d": {"remaining": 0, "last_resort_used": False},
            "s": 0,
        }
    ]


async def test_keypackage_low_event_not_sent_above_threshold(
    client: P2Client, new_session: NewSession
) -> None:
    alice: SessionKey = await new_session("alice")
    bob: SessionKey = await new_session("bob")
    # The default threshold is 5: 7 - 1 leaves 6.
    packages = [make_keypackage(alice.key) for _ in range(7)]
    assert (await upload(client, alice, packages)).status == 201

    await claim(client, "alice", bob.token)

    assert await low_events(client, alice) == []


# --- foreign sessions ------------------------------------------------------------


@pytest.fixture
async def foreign_setup(
    tmp_path: Path, start_server: Callable[[Config], Any]
) -> AsyncIterator[tuple[P2Client, SessionKey]]:
    """A client of this server and a session of dave@other.org identified on it."""
    home = await start_server(
        make_config(tmp_path / "home", server={"domain": "other.org"})
    )
    here = await start_server(
        make_config(
            tmp_path / "here",
            federation={"peers": {"other.org": str(home.make_url(""))}},
        )
    )
    async with (
        P2Client(str(home.make_url(""))) as home_client,
        P2Client(str(here.make_url(""))) as client,
    ):
        await home_client.register("dave", PASSWORD)
        dave = await home_client.trust(SessionKey("dave", "other.org", "d1"), PASSWORD)
        dave.token = await client.identify(dave)
        yield client, dave


async def test_keypackage_upload_refused_for_foreign_session(
    foreign_setup: tuple[P2Client, SessionKey],
) -> None:
    client, dave = foreign_setup
    package = make_keypackage(dave.key)

    batch = await upload(client, dave, [package])
    last_resort = await put_last_resort(client, dave, package)

    assert_error(batch, 400, "P2CORE_BAD_REQUEST")
    assert_error(last_resort, 400, "P2CORE_BAD_REQUEST")


async def test_keypackage_claim_by_foreign_session_succeeds(
    foreign_setup: tuple[P2Client, SessionKey],
) -> None:
    client, dave = foreign_setup
    await client.register("alice", PASSWORD)
    alice = await client.trust(SessionKey("alice", DOMAIN, "s1"), PASSWORD)
    package = make_keypackage(alice.key)
    assert (await upload(client, alice, [package])).status == 201

    assert await claim(client, f"alice@{DOMAIN}", dave.token) == [package]
    foreign = await client.request(
        "GET", "/p2core/keypackage/dave@other.org", token=dave.token
    )
    assert_error(foreign, 404, "P2CORE_NOT_FEDERATED")
