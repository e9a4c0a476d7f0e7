"""Redis faults as weather, for the producer's side.

A Redis call that fails because Redis is away -- restarting, loading its AOF, killed,
stalled past the socket timeout, unreachable -- is made again with backoff until Redis
answers or `patience_s` has passed since the first failure; then FarmUnavailable says
so in one line. Everything the producer writes may be sent twice: enqueueing skips a
job that exists, binding an address is once-only, a commit resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from producer.errors import FarmUnavailable

log = logging.getLogger("wesfarm.producer")
T = TypeVar("T")

# Redis is away (BusyLoadingError, "loading the dataset", is a ConnectionError), or came
# back without our scripts. Not the builtin TimeoutError: the producer's WaitTimeout is one.
TRANSIENT: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError,
                                          NoScriptError, ConnectionError)
FIRST_DELAY_S, MAX_DELAY_S = 0.05, 2.0


class Patience:
    """One outage's backoff: the delay before the next try, or FarmUnavailable."""

    def __init__(self, url: str, patience_s: float, what: str) -> None:
        self.url, self.patience_s, self.what = url, patience_s, what
        self.since: float | None = None
        self.delay = FIRST_DELAY_S

    def next_delay(self, exc: Exception) -> float:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            log.warning("%s: redis at %s unavailable (%s); retrying", self.what, self.url, exc)
        if now - self.since >= self.patience_s:
            raise FarmUnavailable(self.url, now - self.since, exc) from exc
        delay, self.delay = self.delay, min(self.delay * 2, MAX_DELAY_S)
        return min(delay, max(0.0, self.since + self.patience_s - now))

    def recovered(self) -> None:
        if self.since is not None:
            log.info("%s: redis is back after %.1f s", self.what, time.monotonic() - self.since)


async def retrying(op: Callable[[], Awaitable[T]], url: str, patience_s: float,
                   what: str) -> T:
    patience = Patience(url, patience_s, what)
    while True:
        try:
            value = await op()
        except TRANSIENT as exc:
            await asyncio.sleep(patience.next_delay(exc))
            continue
        patience.recovered()
        return value


def retrying_sync(op: Callable[[], T], url: str, patience_s: float, what: str) -> T:
    patience = Patience(url, patience_s, what)
    while True:
        try:
            value = op()
        except TRANSIENT as exc:
            time.sleep(patience.next_delay(exc))
            continue
        patience.recovered()
        return value
