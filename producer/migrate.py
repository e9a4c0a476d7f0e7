"""`wesfarm migrate-results`: Results stored a key per tx (`{p}:result:{tx id}`, before
parts: worker/result_store.py) moved into part records and the index, so that readers
and the write-once check see them. Their fee records are in the stream already and stay;
each lives the farm's span from the move (the index covers no longer). Run with the
farm's workers stopped (old and new workers side by side would each store a tx once in
their own layout)."""

from __future__ import annotations

import uuid
from typing import cast

import msgpack
import redis

from worker.protocol import RESULTS_PER_CALL, Keys, generation, index_key, stored_results_sync

SCAN_COUNT = 1_000


def migrate_results(client: redis.Redis, keys: Keys, ttl_s: int) -> int:
    """Move every `{p}:result:*` into parts (RESULTS_PER_CALL a part) and the index; the
    farm's span (set to `ttl_s` if the farm has none yet) is what a part lives, as the
    workers' do, so the index covers it. A tx the index holds a live Result of already
    keeps that one. Returns how many moved."""
    client.set(f"{keys.prefix}:txpart:span", ttl_s, nx=True)
    raw = client.get(f"{keys.prefix}:txpart:span")
    span = int(cast(bytes, raw)) if raw is not None and cast(bytes, raw).isdigit() else ttl_s
    legacy = f"{keys.prefix}:result:"
    names = [n.decode() for n in client.scan_iter(match=f"{legacy}*", count=SCAN_COUNT)]
    moved = 0
    for i in range(0, len(names), RESULTS_PER_CALL):
        group = names[i : i + RESULTS_PER_CALL]
        values = cast(list[bytes | None], client.mget(group))
        rows = {name[len(legacy):]: value for name, value in zip(group, values, strict=True)
                if isinstance(value, bytes)}  # (one gone since the scan: expired)
        held = set(stored_results_sync(client, keys.prefix, span, rows).results)
        todo = {tx: value for tx, value in rows.items() if tx not in held}
        if todo:
            part = uuid.uuid4().hex
            index = index_key(keys.prefix, generation(span))
            with client.pipeline(transaction=True) as pipe:
                pipe.set(keys.part(part), msgpack.packb(todo, use_bin_type=True),
                         ex=span or None)
                pipe.hset(index, mapping=dict.fromkeys(todo, part))
                if span:
                    pipe.expire(index, 2 * span)
                pipe.execute()
            moved += len(todo)
        client.delete(*group)
    return moved
