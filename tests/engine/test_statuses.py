"""Every result status reachable with a real module: ok, reverted, out_of_fee, trap,
timeout, invalid and error (rejected: test_engine_policy.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from engine import STATUSES, Context, Job, Result, WasmEngine, pack, unpack
from tests.support import TEST_ENV
from tests.support.contracts import PROBE, TRAPS, Chain, check_fee, example, u64

SPIN_FEE = 10_000_000_000  # under the test schedule fuel cannot run out before 50 ms


@pytest.fixture(params=[True, False], ids=["raw", "public"])
def chain(request: pytest.FixtureRequest, engines: dict[bool, WasmEngine]) -> Chain:
    c = Chain(engines[request.param])  # fresh code and state, shared engine
    c.deploy("probe", PROBE)
    c.deploy("traps", TRAPS)
    c.deploy("token", example("token"))
    c.deploy("counter", example("counter"))
    return c


def test_ok(chain: Chain) -> None:
    r = chain.run("counter", "incr")
    assert r.status == "ok" and r.error is None
    assert r.return_data == u64(1) and r.write_set == {b"count": u64(1)}
    assert r.fee.schedule == "wes-fee-test" and r.fee.used > 0


def test_reverted_token_insufficient_funds(chain: Chain) -> None:
    r = chain.run("token", "transfer", u64(5) + b"bob", caller="alice")
    assert r.status == "reverted"
    assert r.error == {"kind": "revert", "message": "insufficient funds"}
    assert r.return_data == b"insufficient funds"
    assert r.write_set == {} and r.fee.used > 0
    assert r.read_set == {b"bal:alice": 0}


def test_reverted_discards_writes_and_events(chain: Chain) -> None:
    r = chain.run("probe", "revert_after_write")
    assert r.status == "reverted" and r.return_data == b"nope"
    assert r.write_set == {} and r.events == []
    assert r.fee.breakdown["storage_write"] > 0 and r.fee.breakdown["events"] > 0


@pytest.mark.parametrize("limit", [6_000, 20_000, 123_457])
def test_out_of_fee_in_a_loop(chain: Chain, limit: int) -> None:
    r = chain.run("traps", "spin", fee_limit=limit)
    assert r.status == "out_of_fee"
    assert r.fee.used == r.fee.limit == limit and r.fee.refunded == 0
    assert r.fee.breakdown["instructions"] == limit - r.fee.breakdown["memory"]
    assert r.error is not None and r.error["kind"] == "instructions"


def test_out_of_fee_discards_writes_and_events(chain: Chain) -> None:
    r = chain.run("probe", "spin_after_write", fee_limit=40_000)
    assert r.status == "out_of_fee" and r.fee.used == 40_000
    assert r.write_set == {} and r.events == []
    check_fee(r)


def test_out_of_fee_during_a_host_call(chain: Chain) -> None:
    r = chain.run("probe", "hash_page_after_write", fee_limit=50_000)
    assert r.status == "out_of_fee" and r.fee.used == 50_000
    assert r.error is not None and "wes.sha256" in r.error["message"]
    assert r.fee.breakdown["hashing"] > 0  # the rest of the budget went to the host call
    assert r.write_set == {}


def test_out_of_fee_before_the_first_instruction(chain: Chain) -> None:
    r = chain.run("traps", "nothing", fee_limit=100)  # initial memory alone costs more
    assert r.status == "out_of_fee" and r.fee.used == 100
    assert r.fee.breakdown["memory"] == 100


@pytest.mark.parametrize(("entry", "kind"), [
    ("unreachable", "unreachable"),
    ("div_zero", "integer_division_by_zero"),
    ("oob_load", "memory_out_of_bounds"),
    ("recurse", "stack_overflow"),
])
def test_wasm_traps(chain: Chain, entry: str, kind: str) -> None:
    r = chain.run("traps", entry)
    assert r.status == "trap"
    assert r.error is not None and r.error["kind"] == kind
    assert kind in r.error["message"]
    assert r.return_data == b"" and r.write_set == {}


@pytest.mark.parametrize(("entry", "host_function"), [
    ("return_oob", "wes.return_data"),
    ("return_wrap", "wes.return_data"),
    ("input_oob", "wes.input_read"),
])
def test_host_pointer_out_of_bounds_traps_naming_the_function(
    chain: Chain, entry: str, host_function: str
) -> None:
    r = chain.run("probe", entry, b"abcd")
    assert r.status == "trap"
    assert r.error is not None and r.error["kind"] == "memory_out_of_bounds"
    assert r.error["message"].startswith(host_function + ":")


@pytest.mark.parametrize("entry", ["write_key", "read_key"])
def test_key_over_256_bytes_traps(chain: Chain, entry: str) -> None:
    assert chain.run("probe", entry, b"k" * 256).status == "ok"
    r = chain.run("probe", entry, b"k" * 257)
    assert r.status == "trap"
    assert r.error is not None and "key is 257 bytes, limit 256" in r.error["message"]
    assert ("wes.storage_write" if entry == "write_key" else "wes.storage_read") \
        in r.error["message"]


def test_timeout_is_not_charged(chain: Chain) -> None:
    r = chain.run("traps", "spin", fee_limit=SPIN_FEE, timeout_ms=50)
    assert r.status == "timeout"
    assert r.error is not None and r.error["kind"] == "deadline" and "50 ms" in r.error["message"]
    assert r.fee.used == 0 and r.fee.refunded == SPIN_FEE
    r = chain.run("probe", "spin_after_write", fee_limit=SPIN_FEE, timeout_ms=50)
    assert r.status == "timeout" and r.write_set == {} and r.events == []
    assert chain.run("counter", "incr").status == "ok"  # the engine goes on


def test_unknown_contract_and_function(chain: Chain) -> None:
    r = chain.run("nobody", "incr")
    assert r.status == "invalid" and r.error is not None
    assert r.error["kind"] == "unknown_contract" and "nobody" in r.error["message"]
    for name in ("decr", "memory", ""):
        r = chain.run("counter", name)
        assert r.status == "invalid" and r.error is not None
        assert r.error["kind"] == "unknown_function"


@pytest.mark.parametrize("code", [
    b"", b"not wasm at all", b"\x00asm\x02\x00\x00\x00", b"\x00asm\x01\x00\x00\x00\x01\xff",
    example("counter")[:60],
])
def test_bad_module_bytes_are_invalid(chain: Chain, code: bytes) -> None:
    chain.deploy("junk", code)
    r = chain.run("junk", "f")
    assert r.status == "invalid"
    assert r.error is not None and r.error["kind"] == "bad_module"


def test_code_not_hashing_to_its_address_is_invalid(chain: Chain) -> None:
    unique = f'(module (memory (export "memory") 1) (func (export "f")) (data (i32.const 0) ' \
        f'"{chain.engine.raw_calls}-liar"))'
    digest = chain.deploy("liar", unique)
    chain.codes.modules[digest] = example("token")
    r = chain.run("liar", "f")
    assert r.status == "invalid" and r.error is not None and r.error["kind"] == "bad_module"
    assert "does not hash" in r.error["message"]


def _wire(**changes: Any) -> dict[str, Any]:
    job = Job("w-1", "probe", "echo", b"hi", 1_000_000).to_wire()
    for key, value in changes.items():
        if value is _DROP:
            del job[key]
        else:
            job[key] = value
    return job


_DROP = object()
MAX_FEE = int(TEST_ENV["WESFARM_LIMITS__MAX_FEE_LIMIT"])  # what the tests run with


def test_execute_wire_accepts_a_good_map(chain: Chain) -> None:
    r = chain.engine.execute_wire(_wire(), chain.state, chain.codes)
    assert r.status == "ok" and r.return_data == b"hi" and r.tx_id == "w-1"


@pytest.mark.parametrize("raw_job", [
    5, None, "job", [1, 2], b"\x80",
    _wire(tx_id=_DROP), _wire(tx_id=""), _wire(tx_id=7), _wire(tx_id="x" * 200),
    _wire(contract=_DROP), _wire(contract="seq"), _wire(function=_DROP), _wire(function=b"echo"),
    _wire(fee_limit=0), _wire(fee_limit=-1), _wire(fee_limit=MAX_FEE + 1), _wire(fee_limit=_DROP),
    _wire(fee_limit="1000"), _wire(fee_limit=True), _wire(fee_limit=1.5),
    _wire(input=b"x" * (64 * 1024 + 1)), _wire(input="hi"), _wire(input=[1]),
    _wire(context=[1]), _wire(context={"caller": 5}), _wire(context={"caller": "a" * 65}),
    _wire(context={"block_height": "1"}), _wire(context={"block_time": 2**64}),
    _wire(mode="write"), _wire(timeout_ms=0), _wire(timeout_ms=30_001), _wire(timeout_ms="50"),
])
def test_malformed_jobs_are_invalid(chain: Chain, raw_job: Any) -> None:
    r = chain.engine.execute_wire(raw_job, chain.state, chain.codes)
    assert r.status == "invalid"
    assert r.error is not None
    assert r.error["kind"] in {"malformed_job", "bad_field", "bad_fee_limit", "input_too_large"}
    assert r.fee.used == 0 and r.write_set == {}
    assert unpack(r.consensus_bytes())["status"] == "invalid"
    if isinstance(raw_job, dict) and isinstance(raw_job.get("tx_id"), str):
        assert r.tx_id == raw_job["tx_id"]


@pytest.mark.parametrize("fee_limit", [2**70, -5, MAX_FEE + 1, 0])
def test_invalid_result_fee_report_stays_in_range(chain: Chain, fee_limit: int) -> None:
    r = chain.engine.execute_wire(_wire(fee_limit=fee_limit), chain.state, chain.codes)
    assert r.status == "invalid"
    assert 0 <= r.fee.used <= r.fee.limit <= MAX_FEE
    assert unpack(r.consensus_bytes())["fee"]["limit"] == r.fee.limit


def test_invalid_result_fee_limit_is_never_a_bool(chain: Chain) -> None:
    r = chain.engine.execute_wire(_wire(fee_limit=True), chain.state, chain.codes)
    assert r.status == "invalid"
    assert type(r.fee.limit) is int and r.fee.limit == 0
    assert unpack(r.consensus_bytes())["fee"]["limit"] is not True


class BrokenState:
    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        raise RuntimeError("state backend exploded")


def test_internal_error_is_a_result_and_the_engine_goes_on(chain: Chain) -> None:
    before = chain.engine.get_metrics()["by_status"].get("error", 0)
    r = chain.run("counter", "incr", state=BrokenState())
    assert r.status == "error"
    assert r.error is not None and "state backend exploded" in r.error["message"]
    assert "RuntimeError" in r.error["message"]
    assert r.fee.used == 0 and r.write_set == {}
    ok = chain.run("counter", "incr")
    assert ok.status == "ok" and ok.return_data == u64(1)
    assert chain.engine.get_metrics()["by_status"]["error"] == before + 1


def test_statuses_cover_the_architecture(chain: Chain) -> None:
    assert set(STATUSES) == {"ok", "reverted", "out_of_fee", "trap", "timeout", "invalid",
                             "rejected", "error"}
    seen: list[Result] = [
        chain.run("counter", "incr"),
        chain.run("token", "transfer", u64(1) + b"bob"),
        chain.run("traps", "spin", fee_limit=10_000),
        chain.run("traps", "unreachable"),
        chain.run("traps", "spin", fee_limit=SPIN_FEE, timeout_ms=50),
        chain.run("nobody", "f"),
        chain.run("counter", "get", state=BrokenState()),
    ]
    chain.deploy("env", '(module (import "env" "f" (func)) (memory (export "memory") 1))')
    seen.append(chain.run("env", "f"))
    assert {r.status for r in seen} == set(STATUSES)
    counts = chain.engine.get_metrics()["by_status"]
    assert set(counts) == set(STATUSES)


@pytest.mark.parametrize("fee_limit", [-5, 2**70])
def test_execute_rejects_an_impossible_fee_limit(chain: Chain, fee_limit: int) -> None:
    job = Job("direct", "counter", "get", b"", fee_limit)
    r = chain.engine.execute(job, chain.state, chain.codes)
    assert r.status == "invalid"
    check_fee(r)


def test_a_result_names_its_job_by_what_the_tx_is_not_where_it_ran(chain: Chain) -> None:
    job = Job("t1", "c", "f", b"in", 5, Context("alice", 3, 4))
    same_tx_elsewhere = replace(job, tx_id="t2", context=Context("alice", 9, 99),
                                writes=(b"k",))
    assert job.digest() == same_tx_elsewhere.digest()
    for other in (replace(job, input=b"other"), replace(job, fee_limit=6),
                  replace(job, context=Context("bob", 3, 4)), replace(job, mode="view"),
                  replace(job, function="g"), replace(job, timeout_ms=7),
                  replace(job, access=(b"k",))):  # declared keys are read and paid for
        assert other.digest() != job.digest()
    r = chain.run("token", "mint", u64(5))
    assert r.job == chain.job("token", "mint", u64(5)).digest()
    assert Result.from_wire(unpack(pack(r.to_wire()))).job == r.job
