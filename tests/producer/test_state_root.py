"""The state root (producer/state_root.py): lattice-hash arithmetic, Lua's lane sum equal to
Python's, and a root that follows writes as the from-scratch root of the state would."""

from __future__ import annotations

import random
import uuid

import pytest
import redis

from producer import state_root
from worker.protocol import STATE_LUA

ADD_LUA = STATE_LUA + "root_add(KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"


def lanes(root: int) -> list[int]:
    raw = state_root.to_bytes(root)
    return [raw[i] | raw[i + 1] << 8 for i in range(0, len(raw), 2)]


def vector(rng: random.Random) -> int:
    return int.from_bytes(rng.randbytes(state_root.ROOT_BYTES), "little")


def test_sums_are_lane_by_lane_mod_2_16() -> None:
    rng = random.Random(5)
    for _ in range(20):
        a, b = vector(rng), vector(rng)
        assert lanes(state_root.add(a, b)) == [(x + y) % 65536 for x, y in
                                               zip(lanes(a), lanes(b), strict=True)]
        assert lanes(state_root.neg(a)) == [(-x) % 65536 for x in lanes(a)]
        assert state_root.add(a, state_root.neg(a)) == state_root.ZERO
    top = int.from_bytes(b"\xff\xff" * state_root.LANES, "little")
    assert state_root.add(top, state_root.from_bytes(b"\x01\x00" * state_root.LANES)) == 0


def test_the_root_depends_on_the_state_not_on_the_order_of_the_writes() -> None:
    entries = [("tok", f"bal:{i}".encode(), i.to_bytes(8, "little")) for i in range(50)]
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    assert state_root.of_entries(entries) == state_root.of_entries(shuffled)
    # overwrite one value, delete another: the same as the root of the state left
    root = state_root.of_entries(entries)
    root = state_root.add(root, state_root.moved([("tok", b"bal:3", entries[3][2], b"new"),
                                                  ("tok", b"bal:7", entries[7][2], None)]))
    left = [e for e in entries if e[1] != b"bal:7"]
    left[3] = ("tok", b"bal:3", b"new")
    assert root == state_root.of_entries(left)
    # a value rewritten as it was moves nothing; a key created then removed, nothing
    assert state_root.moved([("tok", b"k", b"v", b"v")]) == state_root.ZERO
    assert state_root.moved([("tok", b"k", None, b"v"), ("tok", b"k", b"v", None)]) == 0
    assert state_root.moved([("tok", b"k", None, b"v")]) == state_root.entry("tok", b"k", b"v")
    # parts are length-prefixed: moving a byte between contract, key and value tells
    assert state_root.entry("ab", b"c", b"") != state_root.entry("a", b"bc", b"")
    assert state_root.checksum(state_root.of_entries([])) != state_root.checksum(root)


def test_a_root_has_exactly_its_size() -> None:
    with pytest.raises(ValueError, match="2048 bytes"):
        state_root.from_bytes(b"\x00" * 2047)


def test_lua_adds_a_delta_exactly_as_python_does(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"{key_prefix}-root-{uuid.uuid4().hex[:8]}"
    rng = random.Random(9)
    try:
        assert client.eval(ADD_LUA, 1, key, b"\x01" * state_root.ROOT_BYTES) is None  # unknown
        root = vector(rng)
        client.set(key, state_root.to_bytes(root))
        for _ in range(5):
            delta = vector(rng)
            got = client.eval(ADD_LUA, 1, key, state_root.to_bytes(delta))
            root = state_root.add(root, delta)
            assert got == state_root.to_bytes(root)
        assert client.eval(ADD_LUA, 1, key, b"") == state_root.to_bytes(root)  # no change
        assert client.eval(ADD_LUA, 1, key, b"\x01" * 7) is None  # a bad delta: root dropped
        client.set(key, b"short")
        assert client.eval(ADD_LUA, 1, key, state_root.to_bytes(root)) is None  # a bad root
    finally:
        client.delete(key)
        client.close()
