"""Helpers for the producer's end-to-end tests: a two-worker farm on a private prefix,
FarmClient settings for it, and running `wesfarm` as a subprocess against it.

Worker processes come from farm_support.running_worker (the worker's own helper).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from farm_support import WorkerProcess, running_worker

from config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent

# `work`: loop n times (n = input, u64 LE), return the input. ~0.5 ns per iteration,
# 8 fuel each: n = 40_000_000 is ~20 ms and 320 M fee.
WORK_WAT = """
(module
  (import "wes" "input_read" (func $input_read (param i32)))
  (import "wes" "return_data" (func $return_data (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "work")
    (local $n i64)
    (call $input_read (i32.const 0))
    (local.set $n (i64.load (i32.const 0)))
    (block $done (loop $l
      (br_if $done (i64.eqz (local.get $n)))
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br $l)))
    (call $return_data (i32.const 0) (i32.const 8))))
"""


@dataclass
class Farm:
    redis_url: str
    prefix: str
    queue: str
    cache_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def settings(self, **overrides: object) -> Settings:
        return load_settings(redis_url=self.redis_url, key_prefix=self.prefix,
                             queue_name=self.queue, cache_dir=self.cache_dir, **overrides)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "WESFARM_REDIS_URL": self.redis_url,
            "WESFARM_KEY_PREFIX": self.prefix,
            "WESFARM_QUEUE_NAME": self.queue,
            "WESFARM_CACHE_DIR": str(self.cache_dir),
            "PYTHONPATH": str(ROOT),
        }

    def tx_id(self, name: str) -> str:
        """Tx ids carry the prefix: arq's job keys (job id = tx id) get cleaned up with it."""
        return f"{self.prefix}-{name}"

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "producer.cli", *args], cwd=ROOT, env=self.env(),
            capture_output=True, text=True, timeout=timeout,
        )


@contextlib.contextmanager
def two_worker_farm(
    redis_url: str,
    key_prefix: str,
    tmp: Path,
    executors: int = 2,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Farm]:
    prefix = f"{key_prefix}-{uuid.uuid4().hex[:8]}"
    farm = Farm(redis_url, prefix, f"{prefix}:queue", tmp / "cache")
    env = dict(extra_env or {})
    with contextlib.ExitStack() as stack:
        for i in range(2):
            wdir = tmp / f"w{i}"
            wdir.mkdir(parents=True, exist_ok=True)
            # Share the farm's artifact cache (deploy --precompile writes it).
            worker_env = {"WESFARM_CACHE_DIR": str(farm.cache_dir), **env}
            farm.workers.append(stack.enter_context(running_worker(
                redis_url, prefix, farm.queue, wdir, executors=executors,
                extra_env=worker_env,
            )))
        yield farm
