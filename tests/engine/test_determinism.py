"""Determinism: the same job gives the same consensus bytes and fee 100 times, in two
separate processes, on the raw and the public host-call path, cold or warm."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from engine import Context, Job, MemoryState, WasmEngine
from tests.support import ROOT
from tests.support.contracts import NAN, PROBE, TRAPS, Chain, close_engine, example, scenario, u64

REPEATED: list[tuple[str, str, bytes, int]] = [
    ("counter", "incr", b"", 10_000_000),
    ("token", "transfer", u64(40) + b"bob", 10_000_000),
    ("token", "transfer", u64(10**9) + b"bob", 10_000_000),
    ("hello_as", "greet", b"determinism", 10_000_000),
    ("hello_as", "sum_f64", b"", 10_000_000),
    ("probe", "fee_left", b"", 10_000_000),
    ("probe", "spam_log", b"xyz", 10_000_000),
    ("traps", "div_zero", b"", 10_000_000),
    ("traps", "spin", b"", 77_777),
    ("counter", "incr", b"", 11_000),
]


@pytest.fixture()
def chain(settings: Settings) -> Iterator[Chain]:
    c = Chain.start(settings)
    for name, code in (("probe", PROBE), ("traps", TRAPS), ("nan", NAN)):
        c.deploy(name, code)
    for name in ("counter", "token", "hello_as"):
        c.deploy(name, example(name))
    c.state.apply("token", {b"bal:alice": u64(1_000), b"supply": u64(1_000)})
    c.state.apply("counter", {b"count": u64(41)})
    yield c
    c.close()


@pytest.mark.parametrize(("contract", "function", "data", "limit"), REPEATED)
def test_same_job_100_times(chain: Chain, contract: str, function: str, data: bytes,
                            limit: int) -> None:
    job = Job("tx-same", contract, function, data, limit, Context("alice", 9, 1_234))
    seen: set[bytes] = set()
    fees: set[int] = set()
    for i in range(100):
        if i % 3 == 0:
            chain.engine.refill()  # mix warm (pooled) and cold instances
        result = chain.engine.execute(job, chain.state, chain.codes)
        seen.add(result.consensus_bytes())
        fees.add(result.fee.used)
    assert len(seen) == 1 and len(fees) == 1
    pool = chain.engine.get_metrics()["pool"]
    assert pool["hits"] > 0 and pool["misses"] > 0


def test_scenario_is_repeatable_in_process(settings: Settings) -> None:
    first = WasmEngine(settings)
    second = WasmEngine(settings)  # loads every artifact from disk
    try:
        a, b = scenario(first), scenario(second)
        assert second.get_metrics()["cache"]["compiled"] == 0
    finally:
        close_engine(first)
        close_engine(second)
    assert a == b


def test_raw_and_public_paths_agree(settings: Settings) -> None:
    raw = WasmEngine(settings, raw_calls=True)
    public = WasmEngine(settings, raw_calls=False)
    try:
        a, b = scenario(raw), scenario(public)
    finally:
        close_engine(raw)
        close_engine(public)
    assert len(a) == len(b) > 60
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x == y, f"step {i} differs"


def test_raw_and_public_agree_on_every_out_of_fee_point(settings: Settings) -> None:
    engines = [WasmEngine(settings, raw_calls=True), WasmEngine(settings, raw_calls=False)]
    chain = Chain(engines[0])
    chain.deploy("token", example("token"))
    state = MemoryState()
    state.apply("token", {b"bal:alice": u64(50)})
    try:
        full = chain.run("token", "transfer", u64(5) + b"bob", state=state).fee.used
        for limit in range(9_000, full + 2, 211):
            job = Job("t", "token", "transfer", u64(5) + b"bob", limit, Context("alice"))
            raw, public = (e.execute(job, state, chain.codes) for e in engines)
            assert raw.consensus_bytes() == public.consensus_bytes(), limit
    finally:
        for engine in engines:
            close_engine(engine)


def _in_subprocess(cache_dir: Path, raw_calls: bool, hash_seed: str) -> list[bytes]:
    code = (f"from tests.support.contracts import scenario_main; "
            f"scenario_main({str(cache_dir)!r}, {raw_calls!r})")
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, env=env, cwd=ROOT, check=True)
    return [bytes.fromhex(line) for line in out.stdout.split()]


@pytest.mark.integration
def test_two_processes_give_identical_bytes(settings: Settings, tmp_path: Path) -> None:
    engine = WasmEngine(settings)
    try:
        here = scenario(engine)
    finally:
        close_engine(engine)
    cold = _in_subprocess(tmp_path / "other-cache", True, "1")  # compiles everything itself
    warm = _in_subprocess(settings.cache_dir, False, "2")  # loads this process's artifacts
    assert len(here) == len(cold) == len(warm)
    assert cold == here
    assert warm == here


def test_results_survive_the_wire(chain: Chain) -> None:
    from engine import Result, initialize, pack, unpack

    for contract, function, data, limit in REPEATED:
        result = chain.run(contract, function, data, fee_limit=limit)
        back = Result.from_wire(unpack(pack(result.to_wire())))
        assert back.consensus_bytes() == result.consensus_bytes()
        assert back.timings == result.timings
    adapter = initialize(chain.engine.settings, "wasm")
    try:
        assert isinstance(adapter, WasmEngine) and adapter.engine_type == "wasm"
        assert adapter.fingerprint == chain.engine.fingerprint
    finally:
        close_engine(adapter)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown engine type"):
        initialize(chain.engine.settings, "evm")
