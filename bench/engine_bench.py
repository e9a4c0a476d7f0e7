"""In-process figures: compile, cached load, instantiate, acquire, call, host call, fuel, tx/s.

Every figure is a median over repetitions; each one that matters has a baseline
measured in the same run (public wasmtime-py API, plain wasmtime defaults).
"""

from __future__ import annotations

import gc
import hashlib
import time
from typing import Any

import wasmtime

from bench import kernels
from bench.baseline import PublicApiHost, Tx, host_loop_baseline
from bench.common import TOKEN, Report, Scale, median, repeat, rounded, timed
from config import Settings
from engine import (
    ArtifactCache,
    Context,
    Job,
    MemoryCode,
    MemoryState,
    ModuleInfo,
    WasmEngine,
    build_config,
    check_module,
    compile_module,
    fingerprint,
)

FEE_LIMIT = 100_000_000  # a transfer uses ~40 M; within what the default timeout allows
KERNEL_ROUNDS = {"hash": 40, "sort": 2, "sieve": 1, "matmul": 20}


def compile_figures(rep: Report, settings: Settings, scale: Scale) -> dict[str, bytes]:
    """compile_ms_100k, compile_ms_1m, cached_load_ms; returns the generated modules."""
    engine = wasmtime.Engine(build_config(settings))
    modules = {"100k": kernels.generated_module(100_000), "1m": kernels.generated_module(1_000_000)}
    compile_module(engine, modules["100k"])  # warm-up: thread pool, code memory
    for name, code in modules.items():
        check_ms = timed(lambda c=code: check_module(c, settings.limits)) * 1e3  # type: ignore[misc]
        times = [timed(lambda c=code: compile_module(engine, c))  # type: ignore[misc]
                 for _ in range(scale.compile_reps)]
        rep.set(f"compile_ms_{name}", rounded(median(times) * 1e3),
                f"{len(code) / 1e3:.0f} KB wasm; policy check {check_ms:.1f} ms more")
    _compile_tiers(rep, settings, scale, modules)
    cache = ArtifactCache(settings.cache_dir, fingerprint(settings), settings.cache_secret)
    for name, code in (("100k", modules["100k"]), ("1m", modules["1m"]),
                       ("token", TOKEN.read_bytes())):
        digest = hashlib.sha256(code).hexdigest()
        module = compile_module(engine, code)
        artifact = bytes(module.serialize())
        cache.store(digest, check_module(code, settings.limits).to_bytes(), artifact)

        def load(d: str = digest) -> None:
            stored = cache.load(d)
            assert stored is not None, "artifact failed its integrity check"
            ModuleInfo.from_bytes(stored[0])
            wasmtime.Module.deserialize(engine, stored[1])

        value = rounded(median(repeat(load, scale.reps)) * 1e3)
        if name == "100k":
            rep.set("cached_load_ms", value, f"100 KB module, {len(artifact) / 1e3:.0f} KB "
                    "artifact: read + keyed BLAKE2b check + deserialize")
        else:
            rep.extra(f"cached_load_ms_{name}", value)
    return modules


def _compile_tiers(rep: Report, settings: Settings, scale: Scale,
                   modules: dict[str, bytes]) -> None:
    """The generated modules under other tiers (what a faster compiler would buy; each
    is its own engine fingerprint, so not a tier to switch between: see README)."""
    for label, update in (("winch", {"compiler": "winch"}), ("opt_none", {"opt_level": "none"})):
        try:
            engine = wasmtime.Engine(build_config(settings.model_copy(update=update)))
            for size, code in modules.items():
                times = [timed(lambda e=engine, c=code: compile_module(e, c))  # type: ignore[misc]
                         for _ in range(max(1, scale.compile_reps // 2))]
                rep.extra(f"compile_ms_{size}_{label}", rounded(median(times) * 1e3))
        except Exception as exc:  # a tier this wasmtime build lacks: say so, go on
            rep.note(f"compile tier {label} unavailable: {exc}")


class EngineRig:
    """A WasmEngine with the bench's contracts deployed, plus helpers to time executions."""

    def __init__(self, settings: Settings) -> None:
        self.engine = WasmEngine(settings)
        self.codes = MemoryCode()
        self.state = MemoryState()
        self.per_contract = settings.instance_pool_size
        self.fee_limit = settings.limits.max_fee_limit  # never the limit of a bench figure
        self.timeout_ms = settings.limits.max_timeout_ms  # which that fee limit needs

    def deploy(self, address: str, code: bytes) -> str:
        digest = self.codes.deploy(address, code)
        self.engine.precompile(code)
        return digest

    def job(self, address: str, data: bytes = b"", function: str = "run",
            caller: str = "alice", n: int = 0) -> Job:
        return Job(f"{address}-{n}", address, function, data, self.fee_limit,
                   Context(caller, 1234, 1_700_000_000_000), timeout_ms=self.timeout_ms)

    def run(self, job: Job, expect: str = "ok") -> Any:
        result = self.engine.execute(job, self.state, self.codes)
        if result.status != expect:
            raise RuntimeError(f"{job.contract}.{job.function}: {result.status} {result.error}")
        return result

    def warm_up(self, job: Job) -> None:
        """Run `job` until the pooled memory slots it rotates through have all been used
        once: a slot's first use faults in fresh pages (measured: the first ~15
        executions of a 30 µs job take ~90 µs); the figures are for a long-running
        executor."""
        for _ in range(3 * (self.per_contract + 2)):
            self.engine.refill()
            self.run(job)

    def timed_warm(self, job: Job) -> tuple[float, Any]:
        """Seconds for one execution on a warm instance (refill happens before, untimed)."""
        self.engine.refill()
        started = time.perf_counter()
        result = self.engine.execute(job, self.state, self.codes)
        elapsed = time.perf_counter() - started
        if result.status != "ok":
            raise RuntimeError(f"{job.contract}: {result.status} {result.error}")
        return elapsed, result

    def close(self) -> None:
        self.engine.shutdown()


def instance_figures(rep: Report, settings: Settings, scale: Scale) -> None:
    """instantiate_us, pool_acquire_us, call_overhead_us (token and an empty contract)."""
    rig = EngineRig(settings)
    try:
        digest = rig.deploy("token", TOKEN.read_bytes())
        contract = rig.engine.compiled[digest]
        pool = rig.engine.pool
        batch = max(1, min(scale.batch, 64))
        samples = []
        for _ in range(scale.reps * 3):
            gc.collect()
            started = time.perf_counter()
            made = [pool.instantiate(contract) for _ in range(batch)]
            samples.append((time.perf_counter() - started) / batch)
            del made
        rep.set("instantiate_us", rounded(median(samples) * 1e6),
                "fresh Store + limits + pre-instantiated instance + memory export lookup")
        acquired = []
        pool.acquire(contract)  # puts the contract in the hot set
        for _ in range(scale.reps * 5):
            rig.engine.refill()
            n = len(contract.warm)
            started = time.perf_counter()
            got = [pool.acquire(contract) for _ in range(n)]
            acquired.append((time.perf_counter() - started) / max(n, 1))
            del got
        rep.set("pool_acquire_us", rounded(median(acquired) * 1e6))
        rig.deploy("noop", kernels.wasm(kernels.NOOP_WAT))
        job = rig.job("noop")
        rig.run(job)
        warm, cold = [], []
        for _ in range(scale.reps * 5):
            warm.append(rig.timed_warm(job)[0])
            started = time.perf_counter()
            rig.run(job)
            rig.engine.refill()
            cold.append(time.perf_counter() - started)
        rep.set("call_overhead_us", rounded(median(warm) * 1e6),
                "execute() of an empty entry point on a warm instance")
        rep.extra("call_overhead_with_refill_us", rounded(median(cold) * 1e6))
    finally:
        rig.close()


def host_call_figures(rep: Report, settings: Settings, scale: Scale) -> None:
    """host_call_us and baseline_host_call_us: loop with the call minus loop without, / N."""
    n = scale.host_loop
    with_call = kernels.wasm(kernels.host_loop_wat(n, True))
    without = kernels.wasm(kernels.host_loop_wat(n, False))
    rig = EngineRig(settings)
    try:
        rig.deploy("with", with_call)
        rig.deploy("without", without)
        jobs = {name: rig.job(name) for name in ("with", "without")}
        times: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(scale.reps):
            for name, job in jobs.items():
                times[name].append(rig.timed_warm(job)[0])
    finally:
        rig.close()
    per_call = (median(times["with"]) - median(times["without"])) / n
    rep.set("host_call_us", rounded(per_call * 1e6), f"wes.block_height × {n}, raw trampoline "
            "with fuel settle/grant and the fee charge")
    base: dict[str, float] = {}
    for name, code in (("with", with_call), ("without", without)):
        store, run = host_loop_baseline(code)
        base[name] = median(repeat(lambda s=store, r=run: r(s), scale.reps))  # type: ignore[misc]
    rep.set("baseline_host_call_us", rounded((base["with"] - base["without"]) / n * 1e6),
            "Linker.define_func, plain Config")


def fuel_figures(rep: Report, settings: Settings, scale: Scale) -> None:
    """fuel_overhead_ratio: kernels under the engine's Config vs plain wasmtime defaults."""
    variants: dict[str, tuple[wasmtime.Config, bool, bool]] = {
        "engine": (build_config(settings), True, True),
        "plain": (wasmtime.Config(), False, False),
    }
    fuel_only = wasmtime.Config()
    fuel_only.consume_fuel = True
    epoch_only = wasmtime.Config()
    epoch_only.epoch_interruption = True
    variants["fuel_only"] = (fuel_only, True, False)
    variants["epoch_only"] = (epoch_only, False, True)
    engines = {name: (wasmtime.Engine(cfg), fuel, epoch)
               for name, (cfg, fuel, epoch) in variants.items()}
    ratios: dict[str, list[float]] = {name: [] for name in variants if name != "plain"}
    per_kernel = {}
    for kernel, rounds in KERNEL_ROUNDS.items():
        code = kernels.kernel_wasm(kernel, rounds)
        times = {}
        for name, (engine, fuel, epoch) in engines.items():
            store = wasmtime.Store(engine)
            if fuel:
                store.set_fuel(1 << 62)
            if epoch:
                store.set_epoch_deadline(1 << 40)
            instance = wasmtime.Instance(store, wasmtime.Module(engine, code), [])
            run = instance.exports(store)["run"]
            times[name] = median(repeat(lambda s=store, r=run: r(s),  # type: ignore[misc]
                                        max(3, scale.kernel_reps)))
        for name in ratios:
            ratios[name].append(times[name] / times["plain"])
        per_kernel[kernel] = rounded(times["engine"] / times["plain"])
    rep.set("fuel_overhead_ratio", rounded(median(ratios["engine"])),
            "median over kernels " + ", ".join(f"{k} {v}" for k, v in per_kernel.items()))
    rep.extra("fuel_overhead_ratio_fuel_only", rounded(median(ratios["fuel_only"])))
    rep.extra("fuel_overhead_ratio_epoch_only", rounded(median(ratios["epoch_only"])))


def _check(result: Any) -> None:
    if result.status != "ok":
        raise RuntimeError(f"transfer: {result.status} {result.error}")


def transfer_jobs(count: int, prefix: str, fee_limit: int = FEE_LIMIT) -> list[Job]:
    """Transfers of 1 unit from alice to 100 rotating recipients."""
    amount = (1).to_bytes(8, "little")
    context = Context("alice", 1234, 1_700_000_000_000)
    return [Job(f"{prefix}{i}", "token", "transfer", amount + f"acct{i % 100:03d}".encode(),
                fee_limit, context) for i in range(count)]


def tx_figures(rep: Report, settings: Settings, scale: Scale) -> None:
    """engine_tx_per_s (pool refills counted) and baseline_engine_tx_per_s (public API host).

    The engine refills its warm pool whenever it runs dry (one refill() makes a batch);
    that time is part of the total. A second pass never refills (every acquire misses
    and instantiates on the job path), reported as a detail."""
    code = TOKEN.read_bytes()
    rig = EngineRig(settings)
    try:
        digest = rig.deploy("token", code)
        mint = rig.run(rig.job("token", (10**15).to_bytes(8, "little"), "mint"))
        rig.state.apply("token", mint.write_set)
        warm = rig.engine.compiled[digest].warm
        rates, exec_us, refill_us, miss_rates = [], [], [], []
        execute, refill, state, codes = (rig.engine.execute, rig.engine.refill, rig.state,
                                         rig.codes)
        clock = time.perf_counter
        for r in range(scale.tx_rounds):
            jobs = transfer_jobs(scale.tx, f"r{r}-")
            refill()
            gc.collect()
            refill_s = 0.0
            started = clock()
            for job in jobs:
                result = execute(job, state, codes)
                if not warm:
                    mark = clock()
                    refill()
                    refill_s += clock() - mark
            total = clock() - started
            _check(result)
            rates.append(len(jobs) / total)
            exec_us.append((total - refill_s) / len(jobs) * 1e6)
            refill_us.append(refill_s / len(jobs) * 1e6)
            warm.clear()
            started = clock()
            for job in jobs:
                result = execute(job, state, codes)
            miss_rates.append(len(jobs) / (clock() - started))
            _check(result)
        rep.set("engine_tx_per_s", rounded(median(rates)), f"{median(exec_us):.1f} µs execute + "
                f"{median(refill_us):.1f} µs pool refill per tx")
        rep.extra("engine_exec_us_per_tx", rounded(median(exec_us)))
        rep.extra("engine_refill_us_per_tx", rounded(median(refill_us)))
        rep.extra("engine_tx_per_s_no_refill_all_misses", rounded(median(miss_rates)))
    finally:
        rig.close()
    host = PublicApiHost(code)
    storage = {b"bal:alice": (10**15).to_bytes(8, "little")}
    amount = (1).to_bytes(8, "little")
    rates = []
    for _ in range(scale.tx_rounds):
        txs = [Tx(b"alice", amount + f"acct{i % 100:03d}".encode(), storage)
               for i in range(scale.baseline_tx)]
        gc.collect()
        started = time.perf_counter()
        for tx in txs:
            status = host.call("transfer", tx)
        rates.append(len(txs) / (time.perf_counter() - started))
        if status != "ok":
            raise RuntimeError(f"baseline transfer: {status}")
    rep.set("baseline_engine_tx_per_s", rounded(median(rates)),
            "public API: fresh Store, fuel, define_func, caller['memory'], dict storage")
