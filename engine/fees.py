"""The fee schedule and the meter: one integer budget per execution, shared with wasmtime fuel."""

from __future__ import annotations

from config import FeePrices
from engine.errors import OutOfFee

# Breakdown categories, in report order. The breakdown always sums to `used`.
CATEGORIES = (
    "instructions",
    "host_calls",
    "io_bytes",
    "storage_read",
    "storage_write",
    "events",
    "hashing",
    "signatures",
    "calls",
    "memory",
    "table",
    "execution",
)


# The schedule is config.FeePrices itself: one definition of the prices; `version` and a
# digest of every price join the engine fingerprint and every fee report.
FeeSchedule = FeePrices


def paid_pages(schedule: FeeSchedule, pages: int) -> int:
    """Pages that cost `memory_page`: those past the schedule's free ones."""
    return max(0, pages - schedule.memory_free_pages)


class FeeMeter:
    """Consume fee units by category; raise OutOfFee (used == limit) when the budget is gone."""

    __slots__ = ("breakdown", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.breakdown = dict.fromkeys(CATEGORIES, 0)

    @property
    def left(self) -> int:
        return self.limit - self.used

    def consume(self, amount: int, category: str, reason: str | None = None) -> None:
        left = self.limit - self.used
        if amount > left:
            # Charge what is left so that used == limit and the breakdown still sums.
            self.breakdown[category] += left
            self.used = self.limit
            raise OutOfFee(reason or category, amount, left)
        self.breakdown[category] += amount
        self.used += amount

    def exhaust(self, category: str) -> None:
        """The budget ran out inside wasm (fuel): charge the rest to `category`."""
        self.breakdown[category] += self.limit - self.used
        self.used = self.limit
