"""`wesfarm migrate-results`: Results stored a key per tx (`{p}:result:{tx id}`, before
parts: worker/result_store.py) moved into part records and the index, so that readers
and the write-once check see them. Their fee records are in the stream already and stay.
Run with the farm's workers stopped (old and new workers side by side would each store
a tx once in their own layout)."""

from __future__ import annotations

import uuid
from typing import cast

import msgpack
import redis

from worker.protocol import RESULTS_PER_CALL, Keys, generation, index_key, stored_results_sync

SCAN_COUNT = 1_000


def migrate_results(client: redis.Redis, keys: Keys, ttl_s: int) -> int:
    """Move every `{p}:result:*` into parts (RESULTS_PER_CALL a part, expiring with the
    last of them) and the index of the farm's span (set to `ttl_s` if the farm has none
    yet); a tx the index holds already keeps that Result. Returns how many moved."""
    client.set(f"{keys.prefix}:txpart:span", ttl_s, nx=True)
    span = int(cast(bytes, client.get(f"{keys.prefix}:txpart:span")))
    legacy = f"{keys.prefix}:result:"
    names = [n.decode() for n in client.scan_iter(match=f"{legacy}*", count=SCAN_COUNT)]
    moved = 0
    for i in range(0, len(names), RESULTS_PER_CALL):
        group = names[i : i + RESULTS_PER_CALL]
        with client.pipeline(transaction=False) as pipe:
            for name in group:
                pipe.get(name)
                pipe.pttl(name)
            replies = pipe.execute(raise_on_error=False)
        rows = {name[len(legacy):]: (value, ttl) for name, value, ttl in
                zip(group, replies[::2], replies[1::2], strict=True) if isinstance(value, bytes)}
        held = stored_results_sync(client, keys.prefix, span, rows).found()
        todo = {tx: row for tx, row in rows.items() if tx not in held}
        if todo:
            part, index = uuid.uuid4().hex, index_key(keys.prefix, generation(span))
            ttls = [ttl for _, ttl in todo.values()]
            with client.pipeline(transaction=True) as pipe:
                pipe.set(keys.part(part), msgpack.packb({tx: v for tx, (v, _) in todo.items()},
                                                        use_bin_type=True),
                         px=max(ttls) if min(ttls) > 0 else None)
                pipe.hset(index, mapping=dict.fromkeys(todo, part))
                if span:
                    pipe.expire(index, 2 * span)
                pipe.delete(*(legacy + tx for tx in todo))
                pipe.execute()
            moved += len(todo)
        if held:
            client.delete(*(legacy + tx for tx in held))
    return moved
