"""The scale block's heavy tx (a compute loop), and the machine's own scale-out for
`scale_2w_vs_1w` to be read against: those txs run by bare engines (WasmEngine
in-process on a MemoryState, no Redis, no worker), all of them in one process, then half
each in two processes at once.

On a shared VM two busy processes may not get two cores' worth (a neighbour's load, the
hypervisor), and no farm scales past what its machine gives two processes: the ratio of
the two times is that ceiling, measured in the same turns as the farms. Each engine is
`python -m bench.bare_engines`, told a tx count per line on stdin, answering seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench.common import ROOT

ITERATIONS = 1_400_000  # ~2 ms of loop per tx on this project's machine, ~3.4e8 fee units
FEE_LIMIT, TIMEOUT_MS = 10**9, 10_000  # a fee limit this high needs a longer timeout
LOOP_WAT = """
(module
  (import "wes" "input_read" (func $input_read (param i32)))
  (import "wes" "return_data" (func $return_data (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "run")
    (local $n i64)
    (call $input_read (i32.const 0))
    (local.set $n (i64.load (i32.const 0)))
    (block $done (loop $l
      (br_if $done (i64.eqz (local.get $n)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br $l)))
    (call $return_data (i32.const 0) (i32.const 8))))
"""


def serve() -> None:
    """In a child: read a tx count per line, run that many heavy txs, print the seconds."""
    import wasmtime

    from bench.common import bench_settings
    from engine import Job, MemoryCode, MemoryState, WasmEngine

    with bench_settings() as settings:
        engine = WasmEngine(settings)
        codes, state = MemoryCode(), MemoryState()
        codes.deploy("loop", bytes(wasmtime.wat2wasm(LOOP_WAT)))
        seq = 0
        try:
            for line in sys.stdin:
                started = time.perf_counter()
                for _ in range(int(line)):
                    seq += 1
                    job = Job(f"bare-{seq}", "loop", "run",
                              (ITERATIONS + seq % 300).to_bytes(8, "little"), FEE_LIMIT,
                              timeout_ms=TIMEOUT_MS)
                    if engine.execute(job, state, codes).status != "ok":
                        raise RuntimeError("a bare heavy tx did not end ok")
                print(time.perf_counter() - started, flush=True)
        finally:
            engine.shutdown()


class BareEngines:
    """Two child processes, each a warm engine holding the scale block's contract."""

    def __init__(self) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-m", "bench.bare_engines"], cwd=ROOT,
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(2)]
        try:
            self._run([2, 2])  # compile and warm both
        except BaseException:
            self.close()
            raise

    def _run(self, counts: list[int]) -> list[float]:
        procs = self.procs[: len(counts)]
        for proc, count in zip(procs, counts, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(f"{count}\n")
            proc.stdin.flush()
        answers = [proc.stdout.readline() if proc.stdout else "" for proc in procs]
        if not all(answers):
            raise RuntimeError("a bare engine process ended early")
        return [float(a) for a in answers]

    def turn(self, txs: int) -> float:
        """One process's time for `txs` txs over two processes' for half each (both
        running at once)."""
        [alone] = self._run([txs])
        return alone / max(self._run([txs // 2, txs - txs // 2]))

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


if __name__ == "__main__":
    serve()
