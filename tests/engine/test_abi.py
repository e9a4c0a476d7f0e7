"""Host ABI 1, function by function (ABI.md), on the raw and the public host-call path;
view mode and per-contract capability policy; read-set versions."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from config import load_settings
from engine import WasmEngine
from tests.support.contracts import PROBE, Chain, example, u64

KECCAK_EMPTY = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
KECCAK_ABC = "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
MINUS_ONE = b"\xff\xff\xff\xff"


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])  # fresh code and state, shared engine
    c.deploy("probe", PROBE)
    return c


def _read(chain: Chain, key: bytes, cap: int = 64, **kw: object) -> tuple[int, bytes]:
    r = chain.run("probe", "read", struct.pack("<I", cap) + key, **kw)  # type: ignore[arg-type]
    assert r.status == "ok", r.error
    return struct.unpack("<i", r.return_data[:4])[0], r.return_data[4:]


def _set(chain: Chain, key: bytes, value: bytes) -> int:
    return chain.state.apply("probe", {key: value})


def test_input_size_and_read(chain: Chain) -> None:
    for data in (b"", b"x", bytes(range(256)) * 40):
        r = chain.run("probe", "echo", data)
        assert r.status == "ok" and r.return_data == data


def test_return_data_last_call_wins(chain: Chain) -> None:
    assert chain.run("probe", "last_wins").return_data == b"second"


def test_return_data_limit(cache_dir: Path) -> None:
    c = Chain.start(load_settings(cache_dir=cache_dir, limits={"max_return_bytes": 10}))
    try:
        c.deploy("probe", PROBE)
        assert c.run("probe", "echo", b"x" * 10).return_data == b"x" * 10
        r = c.run("probe", "echo", b"x" * 11)
        assert r.status == "trap" and r.error is not None
        assert "wes.return_data" in r.error["message"] and "limit 10" in r.error["message"]
    finally:
        c.close()


def test_log_is_bounded(cache_dir: Path) -> None:
    c = Chain.start(load_settings(cache_dir=cache_dir, limits={"max_logs": 3, "max_log_bytes": 4}))
    try:
        c.deploy("probe", PROBE)
        r = c.run("probe", "spam_log", b"0123456789")  # ten lines of ten bytes
        assert r.status == "ok" and r.logs == [b"0123"] * 3
    finally:
        c.close()


def test_log_default_bounds(chain: Chain) -> None:
    r = chain.run("probe", "spam_log", b"line")
    assert r.status == "ok" and r.logs == [b"line"] * 10
    assert r.fee.breakdown["host_calls"] >= 10 * 200


def test_emit_event(chain: Chain) -> None:
    r = chain.run("probe", "event")
    assert r.status == "ok" and r.events == [(b"topic", b"value-one")]
    assert r.fee.breakdown["events"] == 500 + (5 + 9) * 10


def test_storage_read_absent_is_minus_one(chain: Chain) -> None:
    n, buf = _read(chain, b"missing")
    assert n == -1 and buf == bytes(64)


def test_storage_read_copies_min_and_returns_full_length(chain: Chain) -> None:
    _set(chain, b"key1", b"value-one")
    n, buf = _read(chain, b"key1", cap=3)
    assert n == 9 and buf == b"val" + bytes(61)
    n, buf = _read(chain, b"key1", cap=0)
    assert n == 9 and buf == bytes(64)
    n, buf = _read(chain, b"key1")
    assert n == 9 and buf[:9] == b"value-one"


def test_reads_see_own_writes(chain: Chain) -> None:
    r = chain.run("probe", "write_then_read")
    assert r.status == "ok"
    assert r.return_data[:4] == struct.pack("<i", 9) and r.return_data[4:13] == b"value-one"
    assert r.write_set == {b"key1": b"value-one"}
    assert r.read_set == {}  # served from the execution's own buffer


def test_storage_remove(chain: Chain) -> None:
    version = _set(chain, b"key1", b"old")
    r = chain.run("probe", "remove")
    assert r.status == "ok" and r.write_set == {b"key1": None}
    r = chain.run("probe", "write_remove_read")
    assert r.status == "ok" and r.write_set == {b"key1": None}
    assert r.return_data[:4] == MINUS_ONE
    chain.state.apply("probe", r.write_set)
    assert chain.state.get("probe", b"key1") is None and version == 1


def test_storage_write(chain: Chain) -> None:
    r = chain.run("probe", "write")
    assert r.write_set == {b"key1": b"value-one"}
    assert r.fee.breakdown["storage_write"] == 5_000 + (4 + 9) * 40


def test_caller_and_self_address(chain: Chain) -> None:
    assert chain.run("probe", "caller", caller="alice").return_data == b"alice"
    long = "c" * 64
    assert chain.run("probe", "caller", caller=long).return_data == long.encode()
    assert chain.run("probe", "caller", caller="").return_data == b""
    assert chain.run("probe", "self_address").return_data == b"probe"


@pytest.mark.parametrize("value", [0, 1, 123_456_789, 1_700_000_000_123, 2**32 + 5, 2**63 - 1])
def test_block_height_and_time_are_i64(chain: Chain, value: int) -> None:
    assert chain.run("probe", "height", height=value).return_data == u64(value)
    assert chain.run("probe", "time", time=value).return_data == u64(value)


@pytest.mark.parametrize("value", [-1, -(2**63)])
def test_negative_block_context_is_twos_complement(chain: Chain, value: int) -> None:
    expected = struct.pack("<q", value)
    assert chain.run("probe", "height", height=value).return_data == expected
    assert chain.run("probe", "time", time=value).return_data == expected


def test_fee_left_decreases(chain: Chain) -> None:
    r = chain.run("probe", "fee_left", fee_limit=1_000_000)
    first, second = struct.unpack("<QQ", r.return_data)
    assert 1_000_000 > first > second > 0
    assert first - second > 100  # a 100-iteration loop and a host call in between
    assert r.fee.used > 1_000_000 - second


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 100])
def test_sha256(chain: Chain, data: bytes) -> None:
    r = chain.run("probe", "sha256", data)
    assert r.status == "ok" and r.return_data == hashlib.sha256(data).digest()
    assert r.fee.breakdown["hashing"] == 6 * len(data)


def test_keccak256(chain: Chain) -> None:
    assert chain.run("probe", "keccak256", b"").return_data.hex() == KECCAK_EMPTY
    assert chain.run("probe", "keccak256", b"abc").return_data.hex() == KECCAK_ABC
    assert hashlib.sha3_256(b"").hexdigest() != KECCAK_EMPTY  # Ethereum's, not SHA3-256


@pytest.mark.parametrize(("entry", "capability"), [
    ("write", "state-write"), ("remove", "state-write"), ("event", "events"),
])
def test_view_mode_denies_writes_and_events(chain: Chain, entry: str, capability: str) -> None:
    r = chain.run("probe", entry, mode="view")
    assert r.status == "trap"
    assert r.error is not None and r.error["kind"] == "capability_denied"
    assert "capability denied" in r.error["message"] and capability in r.error["message"]
    assert r.write_set == {} and r.events == []
    assert chain.run("probe", entry).status == "ok"  # call mode allows it


def test_view_mode_allows_reads(chain: Chain) -> None:
    _set(chain, b"key1", b"value-one")
    n, buf = _read(chain, b"key1", mode="view")
    assert n == 9 and buf[:9] == b"value-one"
    for entry in ("caller", "height", "time", "fee_left", "sha256", "echo"):
        assert chain.run("probe", entry, b"x", mode="view").status == "ok"
    chain.deploy("counter", example("counter"))
    r = chain.run("counter", "incr", mode="view")
    assert r.status == "trap" and r.error is not None
    assert r.error["message"] == "wes.storage_write: capability denied (state-write)"
    assert chain.run("counter", "get", mode="view").status == "ok"


def test_policy_denies_a_capability_per_contract(cache_dir: Path) -> None:
    settings = load_settings(cache_dir=cache_dir, denied_capabilities={"locked": ["crypto"]})
    c = Chain.start(settings)
    try:
        c.deploy("locked", PROBE)
        c.deploy("free", PROBE)
        r = c.run("locked", "sha256", b"abc")
        assert r.status == "trap" and r.error is not None
        assert r.error["message"] == "wes.sha256: capability denied (crypto)"
        r = c.run("locked", "keccak256", b"abc")
        assert r.status == "trap"
        assert c.run("locked", "echo", b"abc").status == "ok"  # other capabilities stay
        assert c.run("free", "sha256", b"abc").return_data == hashlib.sha256(b"abc").digest()
    finally:
        c.close()


def test_read_set_records_versions(chain: Chain) -> None:
    v1 = _set(chain, b"a", b"1")
    v2 = _set(chain, b"b", b"22")
    assert (v1, v2) == (1, 2)
    r = chain.run("probe", "read", struct.pack("<I", 64) + b"a")
    assert r.read_set == {b"a": 1}
    r = chain.run("probe", "read", struct.pack("<I", 64) + b"b")
    assert r.read_set == {b"b": 2}
    r = chain.run("probe", "read", struct.pack("<I", 64) + b"zz")
    assert r.read_set == {b"zz": 0}
    chain.state.apply("probe", {b"a": b"one"})
    assert chain.run("probe", "read", struct.pack("<I", 64) + b"a").read_set == {b"a": 3}


def test_read_set_of_the_token_contract(chain: Chain) -> None:
    chain.deploy("token", example("token"))
    r = chain.run("token", "mint", u64(100), caller="alice", commit=True)
    assert r.status == "ok" and r.read_set == {b"supply": 0, b"bal:alice": 0}
    r = chain.run("token", "transfer", u64(30) + b"bob", caller="alice")
    assert r.status == "ok" and r.read_set == {b"bal:alice": 1, b"bal:bob": 0}


def test_read_set_is_kept_on_revert(chain: Chain) -> None:
    chain.deploy("token", example("token"))
    _ = chain.state.apply("token", {b"bal:alice": u64(1)})
    r = chain.run("token", "transfer", u64(5) + b"bob", caller="alice")
    assert r.status == "reverted" and r.read_set == {b"bal:alice": 1}


def test_value_and_event_limits(cache_dir: Path) -> None:
    limits = {"max_value_bytes": 8, "max_events": 3, "max_event_topic_bytes": 4,
              "max_event_data_bytes": 6}
    c = Chain.start(load_settings(cache_dir=cache_dir, limits=limits))
    try:
        c.deploy("probe", PROBE)
        assert c.run("probe", "write_value", b"12345678").write_set == {b"key1": b"12345678"}
        r = c.run("probe", "write_value", b"123456789")
        assert r.status == "trap" and r.error is not None
        assert r.error["message"] == "wes.storage_write: value is 9 bytes, limit 8"
        r = c.run("probe", "spam_event", struct.pack("<I", 5) + b"topicdata")
        assert r.status == "trap" and r.error is not None
        assert "wes.emit_event: topic is 5 bytes, limit 4" in r.error["message"]
        r = c.run("probe", "spam_event", struct.pack("<I", 4) + b"topi" + b"d" * 7)
        assert r.status == "trap" and r.error is not None
        assert "wes.emit_event: data is 7 bytes, limit 6" in r.error["message"]
        r = c.run("probe", "spam_event", struct.pack("<I", 4) + b"topidata")
        assert r.status == "trap" and r.error is not None
        assert r.error["message"] == "wes.emit_event: over 3 events" and r.events == []
    finally:
        c.close()


def test_events_in_order(chain: Chain) -> None:
    r = chain.run("probe", "spam_event", struct.pack("<I", 2) + b"t1payload")
    assert r.status == "ok" and r.events == [(b"t1", b"payload")] * 10
    assert r.fee.breakdown["events"] == 10 * (500 + 9 * 10)
