"""`wesfarm run CONTRACT --function NAME ...`: execute a contract in-process, no Redis."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from config import SettingsError, load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="execute a contract in-process against a state file")
    p.add_argument("contract", type=Path, help="a .wasm or .wat file")
    p.add_argument("--function", required=True, help="the entry point to call")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--input-hex", default="", help="call input as hex")
    data.add_argument("--input-file", type=Path, help="call input from a file (raw bytes)")
    p.add_argument("--fee-limit", type=int, default=None, help="fee units (default: settings)")
    p.add_argument("--mode", choices=("call", "view"), default="call")
    p.add_argument("--state", type=Path, help="state JSON; written back after an ok call")
    p.add_argument("--timeout-ms", type=int, default=None)
    p.add_argument("--caller", default="cli", help="the caller's address")
    p.add_argument("--address", default=None, help="the contract's address (default: file stem)")
    p.add_argument("--height", type=int, default=0, help="block height")
    p.add_argument("--time", type=int, default=0, help="block time, Unix ms")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(handler=run)


def load_code(path: Path) -> bytes:
    """Module bytes from a .wasm file, or a .wat file converted to binary."""
    if path.suffix == ".wat":
        import wasmtime

        return bytes(wasmtime.wat2wasm(path.read_text()))
    return path.read_bytes()


def run(args: argparse.Namespace) -> int:
    from engine import Context, Job, MemoryCode, MemoryState, WasmEngine

    try:
        settings = load_settings()
        code = load_code(args.contract)
        data = args.input_file.read_bytes() if args.input_file else bytes.fromhex(args.input_hex)
    except (SettingsError, OSError, ValueError) as exc:
        print(f"wesfarm run: {exc}", file=sys.stderr)
        return 2
    address = args.address or args.contract.stem
    state = MemoryState()
    if args.state and args.state.exists():
        state.load_json(args.state)
    codes = MemoryCode()
    codes.deploy(address, code)
    engine = WasmEngine(settings)
    try:
        raw_job = Job(
            tx_id="run", contract=address, function=args.function, input=data,
            fee_limit=args.fee_limit if args.fee_limit is not None else settings.default_fee_limit,
            context=Context(args.caller, args.height, args.time), mode=args.mode,
            timeout_ms=args.timeout_ms,
        ).to_wire()
        result = engine.execute_wire(raw_job, state, codes)
    finally:
        engine.shutdown()
    if args.state and result.status == "ok" and args.mode == "call" and result.write_set:
        state.apply(address, result.write_set)
        state.save_json(args.state)
    if args.json:
        print(result.to_json_text())
    else:
        print_summary(result.to_json())
    return 0


def print_summary(r: dict[str, Any]) -> None:
    """A readable Result: status, return data, fee breakdown, events, writes."""
    fee = r["fee"]
    print(f"status       {r['status']}")
    if r["error"]:
        print(f"error        {r['error']['kind']}: {r['error']['message']}")
    print(f"return_data  {r['return_data'] or '(empty)'}")
    print(f"fee          {fee['used']} of {fee['limit']} used, {fee['refunded']} refunded "
          f"(schedule {fee['schedule']})")
    used = {k: v for k, v in fee["breakdown"].items() if v}
    print(f"breakdown    {json.dumps(used)}")
    for event in r["events"]:
        print(f"event        {event['topic']} {event['data']}")
    for line in r["logs"]:
        print(f"log          {line}")
    for key, value in r["write_set"].items():
        print(f"write        {key} = {value if value is not None else '(removed)'}")
    for key, version in r["read_set"].items():
        print(f"read         {key} @ version {version}")
