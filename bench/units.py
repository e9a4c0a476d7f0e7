"""Exact unit counts of an execution, read off the fee meter.

For every price there is an indicator schedule: instruction = 1, that price = 1, every
other price 0. The fee an execution uses under it, minus its fee under the schedule with
only instruction = 1, is how many of that price's units it consumed (loop iterations,
bytes hashed, frames unwound...). No unit is counted by hand, so no count can drift
from what the engine charges.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from config import FeePrices, Settings
from engine import CodeSource, Context, Job, StateView, WasmEngine

UNIT_PRICES = tuple(name for name in FeePrices.model_fields
                    if name not in ("version", "memory_free_pages"))


class UnitCounter:
    def __init__(self, settings: Settings, cache_dir: Path) -> None:
        base: dict[str, Any] = dict.fromkeys(UNIT_PRICES, 0)
        base.update(instruction=1, version="units",
                    memory_free_pages=settings.fees.memory_free_pages)
        self.engines: dict[str, WasmEngine] = {}
        for price in UNIT_PRICES:
            fees = {**base, price: 1} if price != "instruction" else base
            self.engines[price] = WasmEngine(settings.model_copy(update={
                "fees": FeePrices(**fees), "cache_dir": cache_dir / price}))

    def units(self, job: Job, state: StateView, codes: CodeSource,
              expect: str) -> dict[str, int]:
        used = {}
        for price, engine in self.engines.items():
            result = engine.execute(job, state, codes)
            if result.status != expect:
                raise RuntimeError(f"{job.contract}.{job.function} under the {price} "
                                   f"indicator: {result.status} {result.error}")
            used[price] = result.fee.used
        base = used["instruction"]
        return {price: (fee if price == "instruction" else fee - base)
                for price, fee in used.items()}

    def close(self) -> None:
        for engine in self.engines.values():
            engine.shutdown()


@contextmanager
def unit_counter(settings: Settings, cache_dir: Path) -> Iterator[UnitCounter]:
    counter = UnitCounter(settings, cache_dir)
    try:
        yield counter
    finally:
        counter.close()


def job_for(contract: str, data: bytes, function: str, fee_limit: int,
            timeout_ms: int = 30_000) -> Job:
    """A bench job; its timeout the longest a job may ask (limits.max_timeout_ms), so that
    any fee limit up to limits.max_fee_limit is valid."""
    return Job(f"{contract}-probe", contract, function, data, fee_limit,
               Context("alice", 1234, 1_700_000_000_000), timeout_ms=timeout_ms)
