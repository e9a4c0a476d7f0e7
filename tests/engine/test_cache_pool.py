"""The compile cache (memory and disk tiers, tamper refusal, fingerprints) and the warm
instance pool (no state passes from one job to the next)."""

from __future__ import annotations

import gc
import hashlib
import stat
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from engine import WasmEngine
from engine.compiler import ArtifactCache, fingerprint
from engine.policy import check_module
from tests.support.contracts import POOL, POOL_FRESH, TRAPS, Chain, example, u64


def _counter_chain(settings: Settings) -> Chain:
    chain = Chain.start(settings)
    chain.deploy("counter", example("counter"))
    return chain


def _cache(chain: Chain) -> dict[str, int]:
    return dict(chain.engine.get_metrics()["cache"])


def _artifacts(settings: Settings) -> list[Path]:
    return sorted((settings.cache_dir / "artifacts" / fingerprint(settings)).glob("*.cwasm"))


def test_memory_tier(settings: Settings) -> None:
    chain = _counter_chain(settings)
    try:
        assert chain.run("counter", "incr").status == "ok"
        assert chain.run("counter", "incr").status == "ok"
        assert _cache(chain) == {"memory_hit": 1, "disk_hit": 0, "compiled": 1}
    finally:
        chain.close()


def test_a_second_engine_loads_from_disk(settings: Settings) -> None:
    first = _counter_chain(settings)
    try:
        expected = first.run("counter", "incr").consensus_bytes()
        assert _cache(first)["compiled"] == 1
    finally:
        first.close()
    files = _artifacts(settings)
    assert len(files) == 1 and files[0].stem == first.codes.code_hash("counter")
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    second = _counter_chain(settings)
    try:
        assert second.run("counter", "incr").consensus_bytes() == expected
        assert _cache(second) == {"memory_hit": 0, "disk_hit": 1, "compiled": 0}
    finally:
        second.close()


def test_a_job_of_a_contract_in_the_artifact_cache_is_admitted_before_its_first_run(
    settings: Settings,
) -> None:
    """An engine that never ran the contract loads it from the artifact cache to admit a
    job (so its declared keys are fetched with its request's: a fresh executor's first
    request read each key alone); with nothing cached, admission compiles nothing."""
    import dataclasses

    cold = _counter_chain(settings)
    try:
        job = dataclasses.replace(cold.job("counter", "incr"), access=(b"count",))
        assert cold.engine.admitted(job.to_wire(), cold.codes) is None
        assert _cache(cold) == {"memory_hit": 0, "disk_hit": 0, "compiled": 0}
        assert cold.run("counter", "incr").status == "ok"  # compiles it into the cache
    finally:
        cold.close()
    fresh = _counter_chain(settings)
    try:
        assert fresh.engine.admitted(job.to_wire(), fresh.codes) == job
        assert _cache(fresh) == {"memory_hit": 0, "disk_hit": 1, "compiled": 0}
    finally:
        fresh.close()


def _flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize("where", ["artifact", "tag", "metadata", "truncated", "empty"])
def test_a_tampered_artifact_is_refused_and_recompiled(settings: Settings, where: str) -> None:
    first = _counter_chain(settings)
    try:
        expected = first.run("counter", "incr").consensus_bytes()
    finally:
        first.close()
    (path,) = _artifacts(settings)
    size = path.stat().st_size
    if where == "artifact":
        _flip(path, size // 2)
    elif where == "tag":
        _flip(path, 0)
    elif where == "metadata":
        _flip(path, 32 + 4 + 1)
    elif where == "truncated":
        path.write_bytes(path.read_bytes()[: size - 100])
    else:
        path.write_bytes(b"")
    second = _counter_chain(settings)
    try:
        assert second.run("counter", "incr").consensus_bytes() == expected
        assert _cache(second) == {"memory_hit": 0, "disk_hit": 0, "compiled": 1}
    finally:
        second.close()
    third = _counter_chain(settings)  # the recompiled artifact was written back, valid
    try:
        assert third.run("counter", "incr").consensus_bytes() == expected
        assert _cache(third)["disk_hit"] == 1
    finally:
        third.close()


def test_an_undeserializable_artifact_is_recompiled(settings: Settings) -> None:
    code = example("counter")
    code_hash = hashlib.sha256(code).hexdigest()
    cache = ArtifactCache(settings.cache_dir, fingerprint(settings), settings.cache_secret)
    # A verified artifact wasmtime cannot load, as another wasmtime build would leave behind.
    cache.store(code_hash, check_module(code, settings.limits).to_bytes(), b"not an ELF file")
    chain = _counter_chain(settings)
    try:
        r = chain.run("counter", "get")
        assert r.status == "ok", r.error
        assert _cache(chain)["compiled"] == 1
    finally:
        chain.close()


def test_a_host_key_others_can_access_is_refused(settings: Settings) -> None:
    """A key anyone else can read or write could tag forged artifacts (native code)."""
    settings.cache_dir.mkdir(parents=True)
    planted = settings.cache_dir / "host.key"
    planted.write_bytes(b"k" * 32)
    planted.chmod(0o666)
    with pytest.raises(RuntimeError, match="readable or owned by others"):
        ArtifactCache(settings.cache_dir, fingerprint(settings), None)
    planted.chmod(0o600)
    assert ArtifactCache(settings.cache_dir, fingerprint(settings), None).key == b"k" * 32


def test_an_artifact_from_another_secret_is_refused(cache_dir: Path) -> None:
    one = _counter_chain(load_settings(cache_dir=cache_dir, cache_secret="secret-one"))
    try:
        one.run("counter", "get")
    finally:
        one.close()
    two = _counter_chain(load_settings(cache_dir=cache_dir, cache_secret="secret-two"))
    try:
        assert two.run("counter", "get").status == "ok"
        assert _cache(two) == {"memory_hit": 0, "disk_hit": 0, "compiled": 1}
    finally:
        two.close()


@pytest.mark.parametrize("change", [
    {"fees": {"version": "wes-fee-2"}},
    {"limits": {"max_memory_pages": 128}},
    {"opt_level": "none"},
    {"pooling_allocator": False},
])
def test_engine_changes_give_another_fingerprint(cache_dir: Path, change: dict[str, Any]) -> None:
    base = load_settings(cache_dir=cache_dir)
    other = load_settings(cache_dir=cache_dir, **change)
    assert fingerprint(base) != fingerprint(other)
    assert fingerprint(base) == fingerprint(load_settings(cache_dir=cache_dir))
    for settings in (base, other):
        chain = _counter_chain(settings)
        try:
            assert chain.run("counter", "get").status == "ok"
            assert _cache(chain)["compiled"] == 1  # nothing shared across fingerprints
        finally:
            chain.close()
    dirs = sorted(p.name for p in (cache_dir / "artifacts").iterdir())
    assert dirs == sorted([fingerprint(base), fingerprint(other)])


def test_precompile_takes_compiling_off_the_job_path(settings: Settings) -> None:
    chain = Chain.start(settings)
    try:
        code = example("token")
        digest = chain.engine.precompile(code)
        assert digest == chain.deploy("token", code)
        assert chain.run("token", "total_supply").return_data == u64(0)
        assert _cache(chain) == {"memory_hit": 1, "disk_hit": 0, "compiled": 1}
    finally:
        chain.close()


def test_module_cache_eviction_falls_back_to_disk(cache_dir: Path) -> None:
    chain = Chain.start(load_settings(cache_dir=cache_dir, module_cache_size=1))
    try:
        chain.deploy("counter", example("counter"))
        chain.deploy("token", example("token"))
        for _ in range(3):
            assert chain.run("counter", "get").status == "ok"
            assert chain.run("token", "total_supply").status == "ok"
        assert _cache(chain) == {"memory_hit": 0, "disk_hit": 4, "compiled": 2}
    finally:
        chain.close()


# -- pool isolation -------------------------------------------------------------------

@pytest.mark.parametrize("pooling", [True, False], ids=["pooling-allocator", "on-demand"])
@pytest.mark.parametrize("raw_calls", [True, False], ids=["raw", "public"])
def test_warm_instances_never_see_a_previous_job(cache_dir: Path, pooling: bool,
                                                 raw_calls: bool) -> None:
    settings = load_settings(cache_dir=cache_dir, pooling_allocator=pooling, instance_pool_size=4)
    chain = Chain.start(settings, raw_calls=raw_calls)
    try:
        chain.deploy("pool", POOL)
        for i in range(40):
            if i % 2:
                assert chain.engine.refill() >= 0
            r = chain.run("pool", "probe")
            assert r.status == "ok", r.error
            # memory cell, mutable global, data segment, zeroed cell, 1 page: all initial
            assert r.return_data == POOL_FRESH, (i, r.return_data)
        pool = chain.engine.get_metrics()["pool"]
        assert pool["hits"] > 0 and pool["misses"] > 0 and pool["refills"] > 0
    finally:
        chain.close()


def test_warm_instances_after_a_trap_and_out_of_fee(settings: Settings) -> None:
    chain = Chain.start(settings)
    try:
        chain.deploy("pool", POOL)
        for limit in (5_000, 5_100, 5_400, 10_000_000):
            chain.engine.refill()
            r = chain.run("pool", "probe", fee_limit=limit)
            if r.status == "ok":
                assert r.return_data == POOL_FRESH
            chain.engine.refill()
            assert chain.run("pool", "probe").return_data == POOL_FRESH
        assert chain.engine.get_metrics()["pool"]["hits"] > 0
    finally:
        chain.close()


def test_pool_keeps_only_hot_contracts(cache_dir: Path) -> None:
    settings = load_settings(cache_dir=cache_dir, pooled_modules=1, instance_pool_size=2)
    chain = Chain.start(settings)
    try:
        chain.deploy("pool", POOL)
        chain.deploy("counter", example("counter"))
        for _ in range(5):
            chain.engine.refill()
            assert chain.run("pool", "probe").return_data == POOL_FRESH
            chain.engine.refill()
            assert chain.run("counter", "incr", commit=True).status == "ok"
        # alternating contracts with one pooled module: each warm set is dropped unused
        assert chain.engine.get_metrics()["pool"]["hits"] == 0
        assert len(chain.engine.pool.hot) == 1
        chain.engine.refill()
        assert chain.run("counter", "get").return_data == u64(5)
        assert chain.engine.get_metrics()["pool"]["hits"] == 1
    finally:
        chain.close()


def test_no_pool_at_all(cache_dir: Path) -> None:
    settings = load_settings(cache_dir=cache_dir, instance_pool_size=0)
    chain = Chain.start(settings)
    try:
        chain.deploy("pool", POOL)
        for _ in range(5):
            assert chain.engine.refill() == 0
            assert chain.run("pool", "probe").return_data == POOL_FRESH
        assert chain.engine.get_metrics()["pool"]["hits"] == 0
    finally:
        chain.close()


def test_shutdown_is_clean(settings: Settings) -> None:
    engine = WasmEngine(settings)
    engine.shutdown()
    assert not engine.pool.hot and not engine.compiled
    engine.ticker.join(timeout=5)
    assert not engine.ticker.is_alive()
    gc.collect()


@pytest.mark.parametrize("raw_calls", [True, False], ids=["raw", "public"])
def test_an_engine_is_freed_after_shutdown(settings: Settings, raw_calls: bool) -> None:
    """wasmtime-py keeps public host callbacks in a global table: they must not hold the
    engine, or every engine (and its address-space reservation) leaks."""
    engine = WasmEngine(settings, raw_calls=raw_calls)
    ref = weakref.ref(engine)
    engine.shutdown()
    del engine
    gc.collect()
    assert ref() is None


@pytest.mark.integration
def test_many_engines_in_one_process(settings: Settings) -> None:
    """Each pooling-allocator Engine reserves ~1.3 TiB of address space; leaked engines
    abort the process (a wasmtime panic, not an exception) after ~100."""
    code = ("from pathlib import Path\nfrom config import load_settings\n"
            "from engine import WasmEngine\n"
            f"s = load_settings(cache_dir=Path({str(settings.cache_dir)!r}))\n"
            "for _ in range(150):\n    WasmEngine(s, raw_calls=False).shutdown()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-300:]


def test_warm_siblings_survive_traps_and_timeouts(settings: Settings) -> None:
    """Warm instances made together share a Store: a trap, a timeout or running out of fee
    in one must not disturb the next."""
    cold_chain = Chain.start(load_settings(cache_dir=settings.cache_dir, instance_pool_size=0))
    chain = Chain.start(settings)
    try:
        for c in (cold_chain, chain):
            c.deploy("traps", TRAPS)
            c.deploy("pool", POOL)
        steps: list[tuple[str, str, dict[str, Any]]] = [
            ("traps", "spin", {"fee_limit": 10_000_000_000, "timeout_ms": 50}),
            ("traps", "nothing", {}), ("traps", "recurse", {}), ("traps", "nothing", {}),
            ("traps", "spin", {"fee_limit": 30_000}), ("traps", "work_then_return", {}),
            ("traps", "oob_load", {}), ("traps", "nothing", {}),
        ]
        chain.run("traps", "nothing")
        chain.engine.refill()
        for contract, function, kw in steps:
            warm = chain.run(contract, function, **kw)
            cold = cold_chain.run(contract, function, **kw)
            assert (warm.status, warm.fee.used, warm.error) == \
                (cold.status, cold.fee.used, cold.error), function
            chain.run("pool", "probe")
            chain.engine.refill()
            assert chain.run("pool", "probe").return_data == POOL_FRESH
        assert chain.engine.get_metrics()["pool"]["hits"] >= len(steps)
    finally:
        chain.close()
        cold_chain.close()


def test_an_engine_dropped_without_shutdown_stops_its_ticker_which_frees_it_last(
    settings: Settings,
) -> None:
    """The ticker holds the wasmtime engine, not the other way round: the engine is freed
    by the ticker thread after its last tick, never under it."""
    import weakref

    engine = WasmEngine(settings)
    ticker, native = engine.ticker, weakref.ref(engine.engine)
    del engine
    gc.collect()
    ticker.join(timeout=5)
    assert not ticker.is_alive()
    gc.collect()
    assert native() is None
