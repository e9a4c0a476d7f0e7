"""What the farm committed: `wesfarm state ADDR KEY_HEX` (one value and its version),
`wesfarm block H` (a committed block's record) and `wesfarm state-root` (the root of the
whole committed state)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from producer.cliutil import EXIT_FAILED, EXIT_OK, parse_hex, run_async, settings_and_url


def register(sub: Any) -> None:
    p = sub.add_parser(
        "state", help="print a committed state value (hex) and its version",
        description="Read key KEY_HEX of contract ADDR from the committed state "
        "(`{prefix}:state:{ADDR}`). Exit 1 when the key is absent.",
    )
    p.add_argument("address", metavar="ADDR", help="the contract's address")
    p.add_argument("key", metavar="KEY_HEX", help="the key as hex (e.g. 737570706c79 = 'supply')")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(handler=run)
    b = sub.add_parser(
        "block", help="print a committed block's record",
        description="Read the commit record of block H (`{prefix}:block:{H}`): txs, "
        "re-executions, what was not committed and why, fees by sender and status, the "
        "state version and digest after it. Exit 1 when block H is not committed.",
    )
    b.add_argument("height", type=int, metavar="H", help="the block's height")
    b.add_argument("--json", action="store_true", help="the record as one JSON object")
    b.set_defaults(handler=run_block)
    r = sub.add_parser(
        "state-root", help="print the committed state root (--verify: recompute it)",
        description="The root of the whole committed state (README, Blocks: a lattice "
        "hash every commit moves by what it writes), as stored in `{prefix}:root`. "
        "--verify recomputes it from every committed entry (a read of the whole state) "
        "and compares: exit 1 when they differ.",
    )
    r.add_argument("--verify", action="store_true", help="recompute from scratch and compare")
    r.add_argument("--json", action="store_true", help="print exactly one JSON object")
    r.set_defaults(handler=run_root)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _state(args))


def run_block(args: argparse.Namespace) -> int:
    return run_async(lambda: _block(args))


async def _block(args: argparse.Namespace) -> int:
    from producer.client import FarmClient
    from producer.report import render_record

    settings, url = settings_and_url()
    async with FarmClient(settings, url) as farm:
        record = await farm.block_record(args.height)
    if record is None:
        print(f"block {args.height}: not committed")
        return EXIT_FAILED
    print(json.dumps(record) if args.json else render_record(record))
    return EXIT_OK


async def _state(args: argparse.Namespace) -> int:
    from producer.client import FarmClient

    key = parse_hex(args.key, "KEY_HEX")
    settings, url = settings_and_url()
    async with FarmClient(settings, url) as farm:
        found = await farm.state(args.address, key)
    if args.json:
        value, version = found if found is not None else (None, 0)
        print(json.dumps({
            "contract": args.address, "key": key.hex(), "found": found is not None,
            "value": None if value is None else value.hex(), "version": version,
        }))
    elif found is None:
        print(f"{args.address} {key.hex()}: absent")
    else:
        value, version = found
        extra = f" (u64 LE {int.from_bytes(value, 'little')})" if len(value) == 8 else ""
        print(f"{args.address} {key.hex()}: {value.hex()}{extra} @ version {version}")
    return EXIT_OK if found is not None else EXIT_FAILED


VERIFY_TRIES = 20


def run_root(args: argparse.Namespace) -> int:
    import redis

    from producer import state_root
    from producer.committed_state import redis_state_items
    from worker.protocol import Keys

    settings, url = settings_and_url()
    keys = Keys(settings.key_prefix)
    client = redis.Redis.from_url(url)
    try:
        for _ in range(VERIFY_TRIES):  # root and entries of one state: no commit in between
            version = int(client.get(keys.state_seq) or 0)  # type: ignore[arg-type]
            raw = client.get(keys.root)
            items = redis_state_items(client, keys) if args.verify or raw is None else None
            if int(client.get(keys.state_seq) or 0) == version:  # type: ignore[arg-type]
                break
    finally:
        client.close()
    stored = None if raw is None else state_root.from_bytes(raw)  # type: ignore[arg-type]
    scratch = None if items is None else state_root.of_entries(items)
    root = stored if stored is not None else scratch
    verified = None if not args.verify or stored is None else stored == scratch
    shown = state_root.checksum(root) if root is not None else None
    if args.json:
        print(json.dumps({"state_root": shown, "version": version, "stored": raw is not None,
                          "verified": verified,
                          "entries": None if items is None else len(items)}))
    else:
        note = "" if raw is not None else " (not stored yet: computed from the whole state)"
        print(f"state root {shown} at version {version}{note}")
        if verified is not None:
            print(f"verified: the root of all {len(items or [])} committed entries"
                  if verified else "MISMATCH: the root of the committed entries is "
                  f"{state_root.checksum(scratch or 0)}")
    return EXIT_FAILED if verified is False else EXIT_OK
