"""A Result's stored bytes from C (engine/native/packer.c) are the Python path's, byte for
byte: `msgpack.packb(result.to_wire())` and its fee record `packb(result.fee.to_wire())`.
Two workers, one with the C path and one without, must store the same bytes."""

from __future__ import annotations

from collections import OrderedDict
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import MemoryCode, MemoryState, WasmEngine
from engine import raw as engine_raw
from engine.model import Context, FeeReport, Job, Result, pack
from tests.support import CONTRACTS

needs_native = pytest.mark.skipif(engine_raw.native is None,
                                  reason="engine._native is not built")

# Every integer width msgpack has, both signs, and the edges between them.
EDGES = [0, 1, 31, 32, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
         2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
ints = st.one_of(st.sampled_from(EDGES), st.integers(-(2**63), 2**64 - 1))
texts = st.one_of(st.text(max_size=40), st.text(min_size=250, max_size=300))
blobs = st.one_of(st.binary(max_size=40), st.binary(min_size=250, max_size=70_000))


@st.composite
def results(draw: st.DrawFn) -> Result:
    limit = draw(st.one_of(st.sampled_from([e for e in EDGES if 0 <= e < 2**63]),
                           st.integers(0, 2**63 - 1)))
    used = draw(st.integers(0, limit))  # (refunded = limit - used: any width too)
    fee = FeeReport(limit, used, draw(st.dictionaries(st.text(max_size=12), ints, max_size=20)),
                    draw(texts))
    return Result(
        tx_id=draw(texts), status=draw(st.sampled_from(["ok", "reverted", "trap", "é"])),
        fee=fee, return_data=draw(blobs),
        error=draw(st.none() | st.dictionaries(st.text(max_size=8), texts, max_size=3)),
        events=draw(st.lists(st.tuples(blobs, blobs), max_size=20)),
        logs=draw(st.lists(blobs, max_size=5)),
        read_set=draw(st.dictionaries(st.binary(max_size=40), ints, max_size=20)),
        write_set=draw(st.dictionaries(st.binary(max_size=40), st.none() | blobs, max_size=20)),
        worker=draw(texts),
        timings=draw(st.dictionaries(st.text(max_size=10), st.floats(allow_nan=False) | ints,
                                     max_size=4)),
        job=draw(st.sampled_from(["", "fe60fdf65a59755ac0d5ed701c7827f7"])),
    )


def python_bytes(result: Result) -> tuple[bytes, bytes]:
    wire = result.to_wire()
    return pack(wire), pack(wire["fee"])


@needs_native
@settings(max_examples=300, deadline=None)
@given(results())
def test_the_c_bytes_are_the_python_bytes(result: Result) -> None:
    assert engine_raw.native is not None
    assert engine_raw.native.pack_result(result) == python_bytes(result)
    assert result.packed() == python_bytes(result)


@needs_native
def test_a_transfers_result_from_the_engine_packs_the_same_either_way(settings: Any) -> None:
    engine = WasmEngine(settings)
    try:
        state, codes = MemoryState(), MemoryCode()
        codes.deploy("tok", (CONTRACTS / "token" / "token.wasm").read_bytes())
        mint = engine.execute(Job("m", "tok", "mint", (10**9).to_bytes(8, "little") + b"alice",
                                  10**9), state, codes)
        state.apply("tok", mint.write_set)
        result = engine.execute(Job("t", "tok", "transfer", (5).to_bytes(8, "little") + b"bob",
                                    10**9, Context("alice"), access=(b"bal:alice",)), state,
                                codes)
    finally:
        engine.shutdown()
    assert result.status == "ok" and result.read_set and result.write_set and result.events
    result.worker = "w"
    assert engine_raw.native is not None
    assert engine_raw.native.pack_result(result) == python_bytes(result)


def test_a_result_with_call_sets_is_packed_by_the_python_path() -> None:
    result = Result("c", "ok", FeeReport(10, 5, {"calls": 5}, "s"),
                    call_read_sets={"other": {b"k": 3}})
    if engine_raw.native is not None:
        assert engine_raw.native.pack_result(result) is None
    assert result.packed() == python_bytes(result)
    assert b"calls" in result.packed()[0]


@needs_native
@pytest.mark.parametrize("field, value, error", [
    ("events", [(b"t", b"d", b"extra")], ValueError),  # not a (topic, data) pair
    ("read_set", {b"k": 1, "k": 2}, TypeError),  # keys that cannot be sorted together
    ("timings", {"exec_us": {1, 2}}, TypeError),  # a value msgpack cannot serialize
    ("read_set", {b"k": 2**64}, OverflowError),
])
def test_what_python_cannot_pack_is_refused_alike(field: str, value: Any,
                                                  error: type[Exception]) -> None:
    """C raises the same error, or hands the Result to the Python path, which raises."""
    result = Result("x", "ok", FeeReport(1, 1, {}, "s"))
    setattr(result, field, value)
    with pytest.raises(error):
        python_bytes(result)
    with pytest.raises(error):
        result.packed()


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@needs_native
@pytest.mark.parametrize("field, value", [
    ("timings", OrderedDict([("a", 1.0), ("b", 2.0)])),  # a dict subclass, reordered below
    ("return_data", memoryview(b"data")),
    ("events", ((b"t", b"d"),)),  # a tuple of events
    ("read_set", MappingProxyType({b"k": 1})),  # a mapping that is not a dict
    ("timings", {"deep": nested(200)}),
    ("logs", type("Logs", (list,), {})([b"line"])),  # a list subclass
])
def test_what_is_not_the_engines_own_shape_goes_to_the_python_path(field: str,
                                                                   value: Any) -> None:
    result = Result("x", "ok", FeeReport(1, 1, {}, "s"))
    setattr(result, field, value)
    if isinstance(value, OrderedDict):
        value.move_to_end("a")  # iteration order is no longer the dict's own
    assert engine_raw.native is not None
    assert engine_raw.native.pack_result(result) is None
    assert result.packed() == python_bytes(result)
