"""Fee metering: the report's invariants for every status, memory pricing, the schedule's
prices, and canonical NaN bits."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from config import load_settings
from engine import WasmEngine
from engine.errors import OutOfFee
from engine.fees import CATEGORIES, FeeMeter
from tests.support.contracts import (
    CANONICAL_F64,
    NAN,
    NAN_ENTRIES,
    PROBE,
    TRAPS,
    Chain,
    check_fee,
    example,
    u64,
)

PAGE_PRICE = 5_000


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])  # fresh code and state, shared engine
    for name, code in (("probe", PROBE), ("traps", TRAPS), ("nan", NAN)):
        c.deploy(name, code)
    for name in ("counter", "token", "hello_as"):
        c.deploy(name, example(name))
    return c


JOBS: list[tuple[str, str, bytes, int]] = [
    ("counter", "incr", b"", 10_000_000),
    ("token", "mint", u64(10), 10_000_000),
    ("token", "transfer", u64(99) + b"bob", 10_000_000),
    ("token", "balance_of", b"", 10_000_000),
    ("hello_as", "greet", b"fee", 10_000_000),
    ("hello_as", "sum_f64", b"abc", 10_000_000),
    ("probe", "hash_page_after_write", b"", 60_000),
    ("probe", "spin_after_write", b"", 33_333),
    ("probe", "revert_after_write", b"", 10_000_000),
    ("probe", "return_oob", b"", 10_000_000),
    ("traps", "div_zero", b"", 10_000_000),
    ("traps", "spin", b"", 7_777),
    ("counter", "incr", b"", 14_000),
    ("nobody", "f", b"", 10_000_000),
]


@pytest.mark.parametrize(("contract", "function", "data", "limit"), JOBS)
def test_breakdown_sums_to_used_for_every_status(
    chain: Chain, contract: str, function: str, data: bytes, limit: int
) -> None:
    r = chain.run(contract, function, data, fee_limit=limit)  # run() checks the invariants
    wire = r.consensus_wire()["fee"]
    assert sum(wire["breakdown"].values()) == wire["used"]
    assert list(wire["breakdown"]) == sorted(CATEGORIES)
    assert wire["limit"] == limit and wire["schedule"] == "wes-fee-test"


def test_a_limit_below_the_cost_of_a_job_is_out_of_fee_at_every_step(chain: Chain) -> None:
    full = chain.run("counter", "incr").fee.used
    statuses = set()
    for limit in range(1, full + 1, 97):
        r = chain.run("counter", "incr", fee_limit=limit)
        check_fee(r)
        statuses.add(r.status)
        assert r.status == "out_of_fee" and r.fee.used == limit
    assert statuses == {"out_of_fee"}
    assert chain.run("counter", "incr", fee_limit=full).status == "ok"
    assert chain.run("counter", "incr", fee_limit=full - 1).status == "out_of_fee"


def test_initial_memory_and_table_are_charged(chain: Chain) -> None:
    r = chain.run("token", "total_supply")
    assert r.fee.breakdown["memory"] == 2 * PAGE_PRICE  # token starts with 2 pages
    assert r.fee.breakdown["table"] == 1 * 10  # its MVP funcref table has 1 element
    assert chain.run("counter", "get").fee.breakdown["memory"] == PAGE_PRICE


@pytest.mark.parametrize("pages", [0, 1, 5, 100])
def test_memory_grow_is_charged(chain: Chain, pages: int) -> None:
    r = chain.run("probe", "grow", struct.pack("<i", pages))
    assert r.status == "ok"
    assert r.return_data == struct.pack("<ii", 1, 1 + pages)
    assert r.fee.breakdown["memory"] == (1 + pages) * PAGE_PRICE


def test_memory_grow_past_the_limit_returns_minus_one_uncharged(chain: Chain) -> None:
    r = chain.run("probe", "grow", struct.pack("<i", 256))  # 257 pages > 256
    assert r.status == "ok" and r.return_data == struct.pack("<ii", -1, 1)
    assert r.fee.breakdown["memory"] == PAGE_PRICE


def test_memory_grow_that_cannot_be_paid_is_out_of_fee(chain: Chain) -> None:
    r = chain.run("probe", "grow", struct.pack("<i", 100), fee_limit=100_000)
    assert r.status == "out_of_fee" and r.fee.used == 100_000
    assert r.error is not None and r.error["kind"] == "memory.grow"


def test_reverted_is_charged(chain: Chain) -> None:
    r = chain.run("token", "mint", b"short")
    assert r.status == "reverted" and r.fee.used > 0 and r.write_set == {}
    assert r.return_data.startswith(b"bad input: mint")


def test_a_trap_charges_the_work_done_before_it(chain: Chain) -> None:
    work = chain.run("traps", "work_then_return")
    trapped = chain.run("traps", "work_then_trap")
    assert trapped.status == "trap"
    assert trapped.fee.breakdown["instructions"] >= work.fee.breakdown["instructions"] > 10_000
    grown = chain.run("traps", "grow_then_trap")
    assert grown.fee.breakdown["memory"] == 11 * PAGE_PRICE


@pytest.mark.parametrize("raw_calls", [True, False], ids=["raw", "public"])
def test_the_execution_price_includes_the_free_pages(cache_dir: Path, raw_calls: bool) -> None:
    settings = load_settings(cache_dir=cache_dir, fees={"version": "free", "execution": 700,
                                                        "memory_free_pages": 3})
    c = Chain.start(settings, raw_calls=raw_calls)
    try:
        c.deploy("probe", PROBE)
        c.deploy("token", example("token"))
        supply = c.run("token", "total_supply")  # 2 pages: within the free 3
        assert supply.fee.breakdown["execution"] == 700 and supply.fee.breakdown["memory"] == 0
        for pages, paid in ((1, 0), (2, 0), (3, 1), (10, 8)):  # probe: 1 page, grows
            r = c.run("probe", "grow", struct.pack("<i", pages))
            assert r.status == "ok", r.error
            assert r.fee.breakdown["memory"] == paid * PAGE_PRICE, pages
        short = c.run("token", "total_supply", fee_limit=699)
        assert short.status == "out_of_fee" and short.error is not None
        assert short.error["kind"] == "execution" and short.fee.breakdown["execution"] == 699
    finally:
        c.close()


def test_instruction_price_multiplies_fuel(cache_dir: Path) -> None:
    results = {}
    for price in (1, 3):
        settings = load_settings(cache_dir=cache_dir,
                                 fees={"instruction": price, "version": f"p{price}"})
        c = Chain.start(settings)
        try:
            c.deploy("counter", example("counter"))
            c.deploy("traps", TRAPS)
            results[price] = c.run("counter", "incr")
            assert results[price].fee.schedule == f"p{price}"
            spin = c.run("traps", "spin", fee_limit=10_001)  # not a multiple of 3
            assert spin.status == "out_of_fee" and spin.fee.used == 10_001
        finally:
            c.close()
    ones, threes = results[1].fee.breakdown, results[3].fee.breakdown
    assert threes["instructions"] == 3 * ones["instructions"] > 0
    assert {k: v for k, v in threes.items() if k != "instructions"} == \
        {k: v for k, v in ones.items() if k != "instructions"}


def test_fee_meter_unit() -> None:
    meter = FeeMeter(100)
    meter.consume(60, "storage_read")
    with pytest.raises(OutOfFee) as info:
        meter.consume(50, "events", "wes.emit_event")
    assert info.value.kind == "wes.emit_event" and "needs 50, 40 left" in info.value.message
    assert meter.used == 100 and meter.left == 0
    assert meter.breakdown["events"] == 40 and sum(meter.breakdown.values()) == 100
    other = FeeMeter(10)
    other.consume(3, "host_calls")
    other.exhaust("instructions")
    assert other.used == 10 and other.breakdown["instructions"] == 7


# -- NaN canonicalization -------------------------------------------------------------

def test_hello_as_sum_f64_of_nothing_is_the_canonical_nan(chain: Chain) -> None:
    r = chain.run("hello_as", "sum_f64", b"")
    assert r.status == "ok"
    assert r.return_data == bytes.fromhex("000000000000f87f") == CANONICAL_F64


@pytest.mark.parametrize(("values", "expected"), [
    ([], 0x7FF8000000000000),
    ([0x3FF0000000000000, 0x4000000000000000], 0x4010000000000000),  # 1 + 2 -> 4
    ([0x3FF8000000000000, 0xBFF8000000000000], 0x7FF8000000000000),  # 1.5 - 1.5 -> NaN
    ([0x7FF0000000000000], 0x7FF8000000000000),  # inf / inf
    ([0x7FF4000000000001], 0x7FF8000000000000),  # a signalling NaN's payload is dropped
    ([0xFFF8000000000abc, 0x3FF0000000000000], 0x7FF8000000000000),
])
def test_hello_as_sum_f64_bits(chain: Chain, values: list[int], expected: int) -> None:
    r = chain.run("hello_as", "sum_f64", b"".join(struct.pack("<Q", v) for v in values))
    assert r.status == "ok" and r.return_data == struct.pack("<Q", expected)


@pytest.mark.parametrize("entry", sorted(NAN_ENTRIES))
def test_nan_results_are_canonical(chain: Chain, entry: str) -> None:
    r = chain.run("nan", entry)
    assert r.status == "ok" and r.return_data == NAN_ENTRIES[entry]
