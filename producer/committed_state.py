"""The committed state as the producer reads it: an engine StateView over Redis, the
state root (producer/state_root.py: kept up to date by every write, rebuilt from the
whole state only when it is not known) and a genesis write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis

from engine.compiler import is_code_hash
from producer import state_root
from worker.protocol import Keys, decode_state, encode_state, record_groups

COMPLETE = b""  # the registry's member saying it names every state hash

if TYPE_CHECKING:
    from engine.state import MemoryState


class RedisState:
    """engine StateView + CodeSource over the committed Redis state (sync client)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._codes: dict[str, bytes] = {}

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        raw = self.client.hget(self.keys.state(contract), key)  # type: ignore[arg-type]
        return None if raw is None else decode_state(raw)  # type: ignore[arg-type]

    def code_hash(self, address: str) -> str | None:
        raw = self.client.get(self.keys.address(address))
        digest = raw.decode("ascii", "replace") if isinstance(raw, bytes) else None
        return digest if is_code_hash(digest) else None  # (else no contract: as in the farm)

    def code(self, code_hash: str) -> bytes | None:
        if code_hash not in self._codes:
            raw = self.client.get(self.keys.code(code_hash))
            if raw is None:
                return None
            self._codes[code_hash] = raw  # type: ignore[assignment]
        return self._codes[code_hash]


class BlockView(RedisState):
    """The committed state as one block commit sees it: the keys its txs read, fetched
    at once (`prefetch`), then the commit's own writes laid over them (`stage`) with
    the versions they get; any other key read through to Redis when first asked for.
    Addresses are immutable once bound, so their code hashes are kept."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        super().__init__(client, keys)
        self.slots: dict[tuple[str, bytes], tuple[bytes, int] | None] = {}
        self.seq = 0  # the last committed version, as far as this view knows
        self._hashes: dict[str, str] = {}

    def prefetch(self, slots: Iterable[tuple[str, bytes]]) -> None:
        """Forget everything; read `slots` and the state version (one pipeline)."""
        asked = record_groups(slots)
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.keys.state_seq)
        for contract, names in asked:
            pipe.hmget(self.keys.state(contract), names)  # type: ignore[arg-type]
        replies = pipe.execute()
        self.seq = int(replies[0] or 0)
        self.slots = {}
        for (contract, names), values in zip(asked, replies[1:], strict=True):
            for key, raw in zip(names, values, strict=True):
                self.slots[(contract, key)] = None if raw is None else decode_state(raw)

    def get(self, contract: str, key: bytes) -> tuple[bytes, int] | None:
        slot = (contract, key)
        if slot not in self.slots:
            self.slots[slot] = super().get(contract, key)
        return self.slots[slot]

    def code_hash(self, address: str) -> str | None:
        if address not in self._hashes:
            found = super().code_hash(address)
            if found is None:
                return None  # a miss is not kept: it may be deployed a moment later
            self._hashes[address] = found
        return self._hashes[address]

    def current(self, contract: str, read_set: Mapping[bytes, int]) -> bool:
        """Whether every version in `read_set` is the one this view holds (0: absent)."""
        for key, version in read_set.items():
            found = self.get(contract, key)
            if (0 if found is None else found[1]) != version:
                return False
        return True

    def stage(self, contract: str, write_set: Mapping[bytes, bytes | None], version: int) -> None:
        """Lay a write set over the view, under `version`."""
        for key, value in write_set.items():
            self.slots[(contract, key)] = None if value is None else (value, version)


def state_root_of(items: Iterable[tuple[str, bytes, bytes]]) -> str:
    """The root (its checksum) of a whole state given as (contract, key, value)s."""
    return state_root.checksum(state_root.of_entries(items))


def memory_state_root(state: MemoryState) -> str:
    return state_root_of(
        (contract, key, value)
        for contract, slot in state.data.items()
        for key, (value, _version) in slot.items()
    )


def redis_state_items(client: redis.Redis, keys: Keys) -> list[tuple[str, bytes, bytes]]:
    """Every committed (contract, key, value) under the prefix: the hashes the registry
    (Keys.contracts) names, one pipeline. A registry not yet known to be complete
    (state written before there was one) is completed first, by one SCAN."""
    members: set[bytes] = client.smembers(keys.contracts)  # type: ignore[assignment]
    if COMPLETE not in members:
        members = _complete_registry(client, keys)
    names = sorted(n for n in members if n != COMPLETE)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)  # type: ignore[arg-type]
    prefix = keys.state("").encode()
    items: list[tuple[str, bytes, bytes]] = []
    for name, fields in zip(names, pipe.execute(), strict=True):
        contract = bytes(name)[len(prefix) :].decode()
        items += [(contract, bytes(k), decode_state(raw)[0]) for k, raw in fields.items()]
    return items


def _complete_registry(client: redis.Redis, keys: Keys) -> set[bytes]:
    """SCAN for the state hashes, add them (and COMPLETE) to the registry: writers add
    theirs as they write, so from then on it names every one."""
    found = set(client.scan_iter(match=f"{keys.state('')}*", count=1000, _type="hash"))
    client.sadd(keys.contracts, COMPLETE, *found)  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


def rebuilt_state_root(client: redis.Redis, keys: Keys) -> int:
    """The root from scratch: every committed entry read and hashed (O(state))."""
    return state_root.of_entries(redis_state_items(client, keys))


def ensure_state_root(client: redis.Redis, keys: Keys) -> int:
    """The stored root; when it is not known (a farm from before roots, or a script that
    could not keep it exact), rebuilt from scratch and stored -- unless a writer wrote
    meanwhile (every one moves `{p}:state:seq`), then rebuilt again. Call it before
    writing state: the scripts only move a root that exists."""
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.root, keys.state_seq)  # type: ignore[no-untyped-call]
                raw = pipe.get(keys.root)
                if raw is not None:
                    pipe.unwatch()  # type: ignore[no-untyped-call]
                    return state_root.from_bytes(raw)  # type: ignore[arg-type]
                root = rebuilt_state_root(client, keys)
                pipe.multi()
                pipe.set(keys.root, state_root.to_bytes(root))
                pipe.execute()
                return root
            except redis.WatchError:
                continue


def redis_state_root(client: redis.Redis, keys: Keys) -> str:
    """The committed state's root checksum, as the block record holds it."""
    return state_root.checksum(ensure_state_root(client, keys))


def write_genesis(
    client: redis.Redis, keys: Keys, contract: str, values: Mapping[bytes, bytes]
) -> int:
    """Write committed state directly (a genesis step, before any block): one new version,
    the root moved by what the values replace (WATCH: nothing changes in between)."""
    names = list(values)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.state(contract), keys.root, keys.state_seq)  # type: ignore[no-untyped-call]
                stored = pipe.get(keys.root)
                if stored is None:  # not known: build it first (a commit may have dropped it)
                    pipe.unwatch()  # type: ignore[no-untyped-call]
                    ensure_state_root(client, keys)
                    continue
                old: list[Any] = pipe.hmget(  # type: ignore[assignment]
                    keys.state(contract), names) if names else []  # type: ignore[arg-type]
                root = state_root.from_bytes(stored)  # type: ignore[arg-type]
                root = state_root.add(root, state_root.moved(
                    (contract, name, None if raw is None else decode_state(raw)[0], values[name])
                    for name, raw in zip(names, old, strict=True)))
                version = int(pipe.get(keys.state_seq) or 0) + 1  # type: ignore[arg-type]
                pipe.multi()
                pipe.set(keys.state_seq, version)
                if values:
                    pipe.sadd(keys.contracts, keys.state(contract))
                    pipe.hset(keys.state(contract), mapping={  # type: ignore[arg-type]
                        k: encode_state(v, version) for k, v in values.items()})
                    pipe.set(keys.root, state_root.to_bytes(root))
                pipe.execute()
                return version
            except redis.WatchError:
                continue
