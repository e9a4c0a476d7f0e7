"""What the farm committed: `wesfarm state ADDR KEY_HEX` (one value and its version) and
`wesfarm block H` (a committed block's record)."""

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
    p.add_argument("address", metavar="ADDR")
    p.add_argument("key", metavar="KEY_HEX", help="the key as hex (e.g. 737570706c79 = 'supply')")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
    b = sub.add_parser(
        "block", help="print a committed block's record",
        description="Read the commit record of block H (`{prefix}:block:{H}`): txs, "
        "re-executions, what was not committed and why, fees by sender and status, the "
        "state version and digest after it. Exit 1 when block H is not committed.",
    )
    b.add_argument("height", type=int, metavar="H")
    b.add_argument("--json", action="store_true", help="the record as one JSON object")
    b.set_defaults(handler=run_block)


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
