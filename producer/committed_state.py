"""The committed state as the producer reads it: an engine StateView over Redis, the
state digest (sha256 over every committed key and value, in one canonical order) and a
genesis write.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import redis

from worker.protocol import Keys, decode_state, encode_state

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
        return None if raw is None else raw.decode()  # type: ignore[union-attr]

    def code(self, code_hash: str) -> bytes | None:
        if code_hash not in self._codes:
            raw = self.client.get(self.keys.code(code_hash))
            if raw is None:
                return None
            self._codes[code_hash] = raw  # type: ignore[assignment]
        return self._codes[code_hash]


def _digest_update(h: Any, contract: str, key: bytes, value: bytes) -> None:
    for part in (contract.encode(), key, value):
        h.update(struct.pack(">I", len(part)))
        h.update(part)


def state_digest(items: Iterable[tuple[str, bytes, bytes]]) -> str:
    """sha256 over every (contract, key, value), sorted; versions are left out."""
    h = hashlib.sha256(b"wesfarm-state-1")
    for contract, key, value in sorted(items, key=lambda t: (t[0].encode(), t[1])):
        _digest_update(h, contract, key, value)
    return h.hexdigest()


def memory_state_digest(state: MemoryState) -> str:
    return state_digest(
        (contract, key, value)
        for contract, slot in state.data.items()
        for key, (value, _version) in slot.items()
    )


def redis_state_items(client: redis.Redis, keys: Keys) -> list[tuple[str, bytes, bytes]]:
    """Every committed (contract, key, value) under the prefix."""
    prefix = keys.state("")
    items: list[tuple[str, bytes, bytes]] = []
    for name in client.scan_iter(match=f"{prefix}*", count=1000, _type="hash"):
        contract = name[len(prefix) :].decode()  # type: ignore[index, union-attr]
        for key, raw in client.hgetall(name).items():  # type: ignore[union-attr]
            items.append((contract, bytes(key), decode_state(raw)[0]))
    return items


def redis_state_digest(client: redis.Redis, keys: Keys) -> str:
    return state_digest(redis_state_items(client, keys))


def write_genesis(
    client: redis.Redis, keys: Keys, contract: str, values: Mapping[bytes, bytes]
) -> int:
    """Write committed state directly (a genesis step, before any block): one new version."""
    version = int(client.incr(keys.state_seq))  # type: ignore[arg-type]
    if values:
        client.hset(
            keys.state(contract),
            mapping={k: encode_state(v, version) for k, v in values.items()},  # type: ignore[arg-type]
        )
    return version
