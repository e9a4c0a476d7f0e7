"""StateView and CodeSource over a synchronous redis-py client (used inside executors).

Reads follow the layout of worker/protocol.py: `{p}:state:{address}` is a hash of
state records, `{p}:addr:{address}` the sha256 hex of the deployed code, and
`{p}:code:{sha256}` the module bytes.

A Redis failure must not become a consensus result: the view records it in
`failure` (the engine turns the raised exception into an `error` Result) and the
executor reports the job as retryable instead, so the worker retries it later.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis

from engine.compiler import is_code_hash
from engine.model import MAX_ACCESS_KEY_BYTES, Job
from worker.protocol import Keys, decode_state, record_groups

# The read cache's budget is counted as each entry's key, value and ENTRY_BYTES (its
# dict slot and tuples, measured). Reads are paid per tx, but the cache outlives txs and
# requests: bounded by count alone (64 KiB values), it held gigabytes.
ENTRY_BYTES = 320
LARGEST_ENTRY = MAX_ACCESS_KEY_BYTES + 64 * 1024 + ENTRY_BYTES  # (max_value_bytes' cap)
# Keys prefetched per request at most, and fewer where half the budget would not hold
# them all at the largest size (past it, keys are read when an execution asks).
MAX_PREFETCH = 1_024


def declared(jobs: Iterable[Job | None]) -> Iterator[tuple[str, bytes]]:
    """The (contract, key)s that jobs (WasmEngine.admitted's, None for one it did not
    admit) declare in their access lists."""
    for job in jobs:
        if job is not None:
            yield from ((job.contract, key) for key in job.access)


class RedisSources:
    """Both protocols at once: `get` (StateView), `code_hash` and `code` (CodeSource)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        on_code_fetch: Callable[[str], None] | None = None,
        cache_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        self.client = client
        self.keys = keys
        self.on_code_fetch = on_code_fetch
        self.failure: str | None = None
        # Addresses are immutable once deployed: cache positive answers forever.
        # A miss is never cached (the contract may be deployed a moment later).
        self._hashes: dict[str, str] = {}
        # Committed state already read, kept while `{p}:state:seq` (bumped by every
        # commit and deploy that writes state) stays the same: a block's txs mostly
        # read keys earlier txs of the block read, and a Redis round trip costs more
        # than the execution. A commit racing a request can still leave a read stale;
        # the read set carries its version and the commit re-executes such a tx.
        # It is emptied only between txs (reset), so a tx never sees two versions of a key.
        self._reads: dict[tuple[str, bytes], tuple[bytes, int] | None] = {}
        self.cache_bytes, self.cached_bytes = cache_bytes, 0
        self.max_prefetch = max(0, min(MAX_PREFETCH, cache_bytes // 2 // LARGEST_ENTRY))
        self._seq: bytes | None = None

    def begin_request(self, slots: Iterable[tuple[str, bytes]] = ()) -> None:
        """One round trip per request: whether anything was committed since the last one
        (`{p}:state:seq`; if so the cache goes), and the `slots` the request's jobs
        declared (the first max_prefetch) not read already, one HMGET per contract
        (protocol.record_groups), all in one pipeline. Only when the cache went, the
        declared slots it held are read again, in a second one. A Redis error (or a
        record that does not decode) leaves a slot to be read when a job asks for it."""
        if self.cached_bytes > self.cache_bytes // 2:  # room for the largest prefetch
            self._forget()
        fresh: list[tuple[str, bytes]] = []
        held: list[tuple[str, bytes]] = []
        for slot in slots:
            if len(fresh) >= self.max_prefetch:
                break
            (held if slot in self._reads else fresh).append(slot)
        asked = record_groups(fresh)
        try:
            seq, *replies = self._read(asked, with_seq=True)
        except redis.RedisError:  # Redis away: the jobs' own reads will fail, be retried
            self._forget()
            self._seq = None
            return
        if isinstance(seq, redis.RedisError):
            seq = None
        if seq is None or seq != self._seq:
            self._forget()
            if held:
                self._prefetch(record_groups(held[:self.max_prefetch]))
        self._seq = seq
        self._keep(asked, replies)

    def _read(self, asked: list[tuple[str, list[bytes]]], with_seq: bool = False) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        if with_seq:
            pipe.get(self.keys.state_seq)
        for contract, keys in asked:
            pipe.hmget(self.keys.state(contract), keys)  # type: ignore[arg-type]
        # Errors come back per reply: one bad HMGET (a key of another type) costs its
        # own group, not the seq or the others.
        return pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

    def _prefetch(self, asked: list[tuple[str, list[bytes]]]) -> None:
        with contextlib.suppress(redis.RedisError):
            self._keep(asked, self._read(asked))

    def _keep(self, asked: list[tuple[str, list[bytes]]], replies: list[Any]) -> None:
        for (contract, keys), values in zip(asked, replies, strict=False):
            if isinstance(values, redis.RedisError):
                continue
            for key, packed in zip(keys, values, strict=True):
                try:
                    self._cache((contract, key), None if packed is None else decode_state(packed))
                except ValueError:
                    continue

    def _cache(self, slot: tuple[str, bytes], found: tuple[bytes, int] | None) -> None:
        self._reads[slot] = found
        self.cached_bytes += len(slot[1]) + ENTRY_BYTES + (0 if found is None else len(found[0]))

    def _forget(self) -> None:
        self._reads.clear()
        self.cached_bytes = 0

    def reset(self) -> None:
        """Between txs: past its budget the cache starts over (a tx adds at most what it
        pays to read)."""
        self.failure = None
        if self.cached_bytes > self.cache_bytes:
            self._forget()

    def _fail(self, what: str, exc: Exception) -> None:
        self.failure = f"redis error while reading {what}: {exc}"

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        slot = (contract, key)
        if slot in self._reads:
            return self._reads[slot]
        try:
            packed = self.client.hget(self.keys.state(contract), key)  # type: ignore[arg-type]
        except redis.RedisError as exc:
            self._fail("state", exc)
            raise
        found = None if packed is None else decode_state(packed)  # type: ignore[arg-type]
        self._cache(slot, found)
        return found

    def code_hash(self, address: str) -> str | None:
        cached = self._hashes.get(address)
        if cached is not None:
            return cached
        try:
            raw = self.client.get(self.keys.address(address))
        except redis.RedisError as exc:
            self._fail("an address", exc)
            raise
        digest = raw.decode("ascii", "replace") if isinstance(raw, bytes) else None
        if not is_code_hash(digest):  # (absent, or not what deploy writes: no contract there;
            return None  # a path-like one would have named a file outside the artifact cache)
        self._hashes[address] = digest
        return digest

    def code(self, code_hash: str) -> bytes | None:
        # Only called on a compile-cache miss: tell the parent a compile may follow,
        # so its hard deadline allows for it.
        if self.on_code_fetch is not None:
            self.on_code_fetch(code_hash)
        try:
            raw = self.client.get(self.keys.code(code_hash))
        except redis.RedisError as exc:
            self._fail("code", exc)
            raise
        return None if raw is None else bytes(raw)  # type: ignore[arg-type]
