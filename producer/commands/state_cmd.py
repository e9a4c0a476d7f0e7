"""`wesfarm state ADDR KEY_HEX`: one committed state value and its version."""

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


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _state(args))


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
