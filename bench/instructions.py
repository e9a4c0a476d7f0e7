"""Deterministic cost of probe runs: instructions and simulated branch mispredicts.

Each run executes in one valgrind process (callgrind with its branch-predictor
simulation) between client requests that zero the counters and dump them under the
run's name. Its cost is Ir + 15 × mispredicts (a mispredict costs some 15-20 cycles on
current x86 cores; instructions alone would price a random branch like an add). The same
build gives the same counts on any host of one architecture, so prices calibrated on
them do not drift with the machine that measured them. callgrind's cache simulation is
left out: it has no prefetcher, and would price a sequential copy far above its time.
Kernel work (page faults, mmap, signals) and waiting (on Redis) are invisible here; those
prices are calibrated by time (bench/calibrate.py says which).

    python -m bench.instructions SPEC.json   (the child, run under valgrind)
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT

MARKS_C = r"""
#include <valgrind/callgrind.h>
void wes_cg_begin(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; }
void wes_cg_end(const char *name) { CALLGRIND_DUMP_STATS_AT(name); CALLGRIND_STOP_INSTRUMENTATION; }
"""
WEIGHTS = {"Ir": 1, "Bcm": 15, "Bim": 15}


def available() -> str | None:
    """None when estimated cycles can be counted here, else why not."""
    if shutil.which("valgrind") is None:
        return "valgrind is not installed"
    if shutil.which("gcc") is None or not Path("/usr/include/valgrind/callgrind.h").exists():
        return "no gcc or valgrind/callgrind.h to build the client-request marks"
    return None


def _marks(directory: Path) -> Path:
    source, lib = directory / "marks.c", directory / "marks.so"
    source.write_text(MARKS_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(source)], check=True)
    return lib


def count(runs: dict[str, dict[str, Any]], timeout_s: float = 3_600) -> dict[str, float]:
    """CEst of each run: name -> {contract, data (hex), function, expect, cold}."""
    with tempfile.TemporaryDirectory(prefix="wesfarm-cg-") as tmp:
        directory = Path(tmp)
        spec = {"marks": str(_marks(directory)), "runs": runs, "cache": str(directory / "c")}
        (directory / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
        log = directory / "valgrind.log"
        done = subprocess.run(
            # children too: the compile sandbox must see the CPU valgrind presents, or
            # its artifacts would not load here
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--branch-sim=yes",
             "--smc-check=all-non-file", "--trace-children=yes",
             f"--callgrind-out-file={directory}/cg.out.%p",
             sys.executable, "-m", "bench.instructions", str(directory / "spec.json")],
            env=env, cwd=ROOT, timeout=timeout_s, stdout=subprocess.DEVNULL,
            stderr=log.open("wb"))
        if done.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError("counting under callgrind failed:\n" + "\n".join(tail))
        return _parse(directory)


def _parse(directory: Path) -> dict[str, float]:
    out = {}
    for path in directory.glob("cg.out*"):
        text = path.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        events = re.search(r"^events: (.+)$", text, re.M)
        totals = re.search(r"^(?:totals|summary): (.+)$", text, re.M)
        if not (trigger and events and totals):
            continue
        values = dict(zip(events.group(1).split(), map(int, totals.group(1).split()),
                          strict=False))
        out[trigger.group(1).strip()] = float(sum(values.get(k, 0) * w
                                                  for k, w in WEIGHTS.items()))
    return out


def _child(spec_path: str) -> None:
    from bench.probe_runner import deployed_codes, probe_state
    from bench.units import job_for
    from config import load_settings
    from engine import WasmEngine

    spec = json.loads(Path(spec_path).read_text())
    marks = ctypes.CDLL(spec["marks"])
    marks.wes_cg_end.argtypes = [ctypes.c_char_p]
    runs = spec["runs"]
    # The pooling allocator's reservations are more than valgrind can map.
    engine = WasmEngine(load_settings(cache_dir=Path(spec["cache"]), pooling_allocator=False,
                                      compile_timeout_ms=3_600_000))
    codes, state = deployed_codes({r["contract"] for r in runs.values()}), probe_state()
    for name, run in runs.items():
        job = job_for(run["contract"], bytes.fromhex(run["data"]), run["function"],
                      engine.limits.max_fee_limit)
        engine.execute(job, state, codes)  # compiled, warm: what the count is not about
        if run["cold"]:
            engine.loader.clear()
            engine.pool.clear()
        else:
            engine.refill()
        marks.wes_cg_begin()
        result = engine.execute(job, state, codes)
        marks.wes_cg_end(name.encode())
        if result.status != run["expect"]:
            raise SystemExit(f"{name}: {result.status} {result.error}")
    engine.shutdown()


if __name__ == "__main__":
    _child(sys.argv[1])
