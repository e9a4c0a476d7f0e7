"""One reader of the `{p}:fees` stream per FarmClient, for all its waits.

Every part of results a worker stores comes with a fee-stream entry naming its tx ids
(written in the same atomic step), so FarmClient.wait learns of results from the stream. Each wait
reading the whole stream itself (XREAD BLOCK, decode every entry) costs every wait
every result: with W waits in flight the producer decodes each entry W times, and
more so the later results come, as waits pile up. FeeWatch reads the stream once
(while anyone waits) and hands each wait just the tx ids it asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from redis.asyncio import Redis

from worker.protocol import FeeEntry, entry_tx_ids, hint_tx_ids

Retry = Callable[[Callable[[], Awaitable[Any]], str], Awaitable[Any]]
BLOCK_MS = 100
COUNT = 1_000  # entries a read takes at most: an entry holds up to a part of records
EXPECTED_MAX = 200_000  # tx ids enqueued by this client and watched for before any wait
EXPECTED_IDLE_S = 10.0  # with no wait, the reader stops this long after the last enqueue


class Waiter:
    """The tx ids one wait still needs, and those the stream has named since."""

    def __init__(self, pending: Iterable[str]) -> None:
        self.pending = set(pending)
        self.ready: list[tuple[str, str | None]] = []  # (tx id, the part holding its Result)
        self.event = asyncio.Event()
        self.unwatched = False  # a reader started anew: what it did not see, look up

    def take(self) -> list[tuple[str, str | None]]:
        ready, self.ready = self.ready, []
        self.event.clear()
        return ready


class FeeWatch:
    def __init__(self, redis: Redis, stream: str, hints: str, retry: Retry) -> None:
        """`stream`: the fee stream; `hints`: the stream naming txs found stored before
        (`{p}:fees:known`), read with it."""
        # Its own client on the same connections, with XREAD's reply left as Redis sends it:
        # redis-py's parse into a dict per entry cost the producer more than the read, and
        # only the tx id is wanted.
        self.redis = Redis(connection_pool=redis.connection_pool)
        self.redis.set_response_callback("XREAD", lambda response, **_: response)
        self.stream, self.hints, self.retry = stream, hints, retry
        self.waiters: dict[str, list[Waiter]] = {}
        self.task: asyncio.Task[None] | None = None
        self.started: asyncio.Future[None] | None = None
        self.error: BaseException | None = None
        # Tx ids this client is enqueuing, watched for since before: their records can only
        # follow. tx id -> the part the stream named for it ("": named, no part), or None.
        self.expected: dict[str, str | None] = {}
        self.expected_at = 0.0

    async def add(self, waiter: Waiter) -> None:
        """Watch for `waiter`'s tx ids; returns once every entry appended from now on
        will be seen (so a scan made after this misses nothing)."""
        for tx_id in waiter.pending:
            self.waiters.setdefault(tx_id, []).append(waiter)
        await self._running(waiter)

    async def expect(self, tx_ids: Iterable[str]) -> None:
        """Before `tx_ids` are enqueued: watch for them, so that a wait for them need not
        look them up first (their Results, unless stored before, come after this point)."""
        ids = list(tx_ids)
        if len(self.expected) + len(ids) > EXPECTED_MAX:  # (never waited for, mostly)
            self.expected.clear()  # they are looked up when waited for, as any tx
        for tx_id in ids:
            self.expected.setdefault(tx_id, None)
        self.expected_at = asyncio.get_running_loop().time()
        try:
            await self._running()
        except Exception:  # (a wait meets it; the enqueue must not, nor need the watch)
            self.unexpect(ids)

    def unexpect(self, tx_ids: Iterable[str]) -> None:
        """These will be looked up when waited for (their jobs ran before)."""
        for tx_id in tx_ids:
            self.expected.pop(tx_id, None)

    def claim(self, waiter: Waiter, tx_ids: Iterable[str]) -> list[str]:
        """Those of `tx_ids` this watch did not expect: what a wait must look up. The ones
        it did are `waiter`'s now (ready where the stream named them already)."""
        unseen = []
        for tx_id in tx_ids:
            if tx_id not in self.expected:
                unseen.append(tx_id)
                continue
            part = self.expected.pop(tx_id)
            if part is not None:
                waiter.ready.append((tx_id, part or None))
                waiter.event.set()
        return unseen

    async def _running(self, joining: Waiter | None = None) -> None:
        """The reader runs; a new one makes the waits it did not start for (not
        `joining`'s) look up what they still need."""
        if self.task is None or self.task.done():
            self.error = None
            self.started = asyncio.get_running_loop().create_future()
            self.task = asyncio.create_task(self._read())
            for group in self.waiters.values():  # (a reader died: entries went unread)
                for waiter in group:
                    if waiter is not joining:
                        waiter.unwatched = True
                        waiter.event.set()
        assert self.started is not None
        await asyncio.shield(self.started)

    def _watching(self) -> bool:
        if self.waiters:
            return True
        return bool(self.expected) and (
            asyncio.get_running_loop().time() - self.expected_at < EXPECTED_IDLE_S)

    def remove(self, waiter: Waiter) -> None:
        for tx_id in waiter.pending:
            group = self.waiters.get(tx_id)
            if group is not None:
                if waiter in group:
                    group.remove(waiter)
                if not group:
                    del self.waiters[tx_id]

    def found(self, waiter: Waiter, tx_id: str) -> None:
        """`waiter` has tx_id's result: stop watching it for that waiter."""
        waiter.pending.discard(tx_id)
        group = self.waiters.get(tx_id)
        if group is not None and waiter in group:
            group.remove(waiter)
            if not group:
                del self.waiters[tx_id]

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        self.expected.clear()

    async def _read(self) -> None:
        assert self.started is not None
        readers = {self.stream.encode(): entry_tx_ids, self.hints.encode(): hint_tx_ids}
        try:
            last: dict[Any, Any] = {}
            for stream in (self.stream, self.hints):
                newest = await self.retry(partial(self.redis.xrevrange, stream, count=1),
                                          "wait")
                last[stream] = newest[0][0].decode() if newest else "0-0"
            self.started.set_result(None)
            while self._watching():
                reply = await self.retry(partial(
                    self.redis.xread, dict(last), count=COUNT, block=BLOCK_MS), "wait")
                woken: set[Waiter] = set()
                expected = self.expected
                for stream_name, entries in reply or []:
                    names = readers.get(bytes(stream_name), entry_tx_ids)
                    for entry_id, fields in entries:
                        last[bytes(stream_name).decode()] = entry_id.decode()
                        for tx_id, part in names(fields):
                            if tx_id in expected:
                                expected[tx_id] = part or ""
                            for waiter in self.waiters.get(tx_id, ()):
                                waiter.ready.append((tx_id, part))
                                woken.add(waiter)
                for waiter in woken:
                    waiter.event.set()
            self.expected.clear()  # (no await since the check: nothing was added meanwhile)
        except Exception as exc:  # every wait raises it (FarmUnavailable, say)
            self.expected.clear()  # what the stream held meanwhile is unknown
            self.error = exc
            if not self.started.done():
                self.started.set_exception(exc)
            for group in list(self.waiters.values()):
                for waiter in group:
                    waiter.event.set()


async def read_fee_entries(redis: Redis, stream: str, retry: Retry,
                           tx_ids: Iterable[str] | None = None, start: str = "-",
                           end: str = "+", count: int | None = None,
                           page: int = 1_000) -> list[FeeEntry]:
    """Entries of the fee stream from `start` to `end` in order (only `tx_ids`' if given)."""
    wanted = None if tx_ids is None else set(tx_ids)
    out: list[FeeEntry] = []
    cursor = start
    exclusive = False
    while count is None or len(out) < count:
        lo = f"({cursor}" if exclusive else cursor
        entries = await retry(partial(redis.xrange, stream, min=lo, max=end, count=page),
                              "fee_reports")
        for stream_id, fields in entries:
            out += [record for record in FeeEntry.decode(stream_id, fields)
                    if wanted is None or record.tx_id in wanted]
        if len(entries) < page:
            break
        cursor, exclusive = entries[-1][0].decode(), True
    return out if count is None else out[:count]
