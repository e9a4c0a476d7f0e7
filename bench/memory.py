"""executor_rss_mb and module_memory_mb: a spawned process with warm pools for 10 contracts.

The child (`python -m bench.memory`) builds a WasmEngine, deploys ten
contracts (the three examples, the empty one, the six workload classes), runs each
once so it is hot, refills every pool, then prints one JSON line and waits for its
stdin to close. The parent reads the child's VmRSS from /proc while it waits.
`module_memory_mb` is the linear memory of the warm instances (what the contracts
themselves asked for); the rest of the RSS is interpreter, wasmtime and code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import EXAMPLES, ROOT, Report, rounded


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def child(contracts: int) -> None:
    from bench import kernels
    from bench.engine_bench import EngineRig
    from config import load_settings

    rig = EngineRig(load_settings(cache_dir=Path(os.environ["WESFARM_BENCH_CACHE"])))
    codes: dict[str, bytes] = {}
    if contracts:
        for name in ("token", "counter", "hello_as"):
            codes[name] = (EXAMPLES / name / f"{name}.wasm").read_bytes()
        codes["noop"] = kernels.wasm(kernels.NOOP_WAT)
        for name in kernels.WORKLOADS:
            codes[name] = kernels.workload_wasm(name)
    entry = {"token": "total_supply", "counter": "get", "hello_as": "greet"}
    for name, code in list(codes.items())[:contracts]:
        rig.deploy(name, code)
        data = kernels.params(1, 8) if name in kernels.WORKLOADS else b""
        if name == "memory_heavy":
            data = kernels.params(1, 1)
        rig.run(rig.job(name, data, entry.get(name, "run")))
    while rig.engine.refill():
        pass
    print(json.dumps(rig.engine.warm_pool_usage()), flush=True)
    sys.stdin.read()
    rig.close()


def measure(contracts: int, cache_dir: Path) -> tuple[float, dict[str, int]]:
    env = dict(os.environ, WESFARM_BENCH_CACHE=str(cache_dir))
    proc = subprocess.Popen([sys.executable, "-m", "bench.memory", str(contracts)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                            cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"memory child exited with {proc.wait(10)}")
        info = json.loads(line)
        rss = vm_rss_mb(proc.pid)
        proc.stdin.close()
        proc.wait(30)
        return rss, info
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def memory_figures(rep: Report, cache_dir: Path) -> None:
    rss, info = measure(10, cache_dir)
    idle, _ = measure(0, cache_dir)
    module_mb = info["module_memory_bytes"] / 2**20
    rep.set("executor_rss_mb", rounded(rss), f"{info['contracts']} contracts, "
            f"{info['instances']} warm instances; an idle engine: {idle:.1f} MB")
    rep.set("module_memory_mb", rounded(module_mb), "linear memory of the warm instances")
    rep.extra("executor_idle_rss_mb", rounded(idle))
    rep.extra("memory_overhead_ratio", rounded(rss / module_mb) if module_mb else None)


if __name__ == "__main__":
    child(int(sys.argv[1]))
