"""`wesfarm run CONTRACT --function NAME ...`: execute a contract in-process, no Redis."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config import SettingsError, load_settings
from engine import MemoryState, Result
from producer.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, CliError, err
from producer.inputs import parse_hex, read_code


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="execute a contract in-process against a state file",
                       description="Execute FUNCTION of a .wasm/.wat file in this process "
                       "(no Redis). Exit 0 whenever a Result was produced.")
    p.add_argument("contract", type=Path, metavar="FILE", help="a .wasm or .wat file")
    p.add_argument("function", nargs="?", metavar="FUNCTION", help="the entry point to call")
    p.add_argument("--function", dest="function_option", help=argparse.SUPPRESS)  # before 0.2
    data = p.add_mutually_exclusive_group()
    data.add_argument("--input-hex", default="", help="call input as hex")
    data.add_argument("--input-file", type=Path, help="call input from a file (raw bytes)")
    p.add_argument("--fee-limit", type=int, default=None, help="fee units (default: settings)")
    p.add_argument("--mode", choices=("call", "view"), default="call",
                   help="view: may not write state or emit events")
    p.add_argument("--state", type=Path, help="state JSON; written back after an ok call")
    p.add_argument("--timeout-ms", type=int, default=None, metavar="MS",
                   help="the job's wall-clock timeout (default: settings)")
    p.add_argument("--caller", default="cli", help="the caller's address")
    p.add_argument("--address", default=None, help="the contract's address (default: file stem)")
    p.add_argument("--contract", action="append", default=[], metavar="ADDR=FILE", dest="others",
                   help="another contract the run may call, at ADDR (repeatable); its init "
                   "runs first when --state holds nothing of it yet")
    p.add_argument("--height", type=int, default=0, help="block height")
    p.add_argument("--time", type=int, default=0, help="block time, Unix ms")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(handler=run)


def _state(path: Path | None) -> MemoryState:
    state = MemoryState()
    if path is not None and path.exists():
        try:
            state.load_json(path)
        except OSError as exc:
            raise CliError(f"--state {path}: {exc.strerror or exc}") from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise CliError(f"--state {path}: not a wesfarm state file ({exc}); "
                           "delete it or point --state elsewhere") from None
    return state


def _interruptible(execute: Callable[[], Result]) -> Result:
    """Run `execute` on a thread so that Ctrl-C ends the command at once: Python handles
    signals only on the main thread, and only between bytecodes, never inside wasm."""
    done: list[Result] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            done.append(execute())
        except BaseException as exc:  # re-raised on the main thread
            failed.append(exc)

    thread = threading.Thread(target=target, name="wesfarm-run", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.05)
    except KeyboardInterrupt:
        err("interrupted (nothing written)")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)  # the wasm thread cannot be stopped from here
    if failed:
        raise failed[0]
    return done[0]


def _other_contracts(specs: list[str], main: str) -> dict[str, bytes]:
    """`--contract ADDR=FILE`s: address -> module bytes (each checked before anything runs)."""
    out: dict[str, bytes] = {}
    for spec in specs:
        address, sep, path = spec.partition("=")
        if not sep or not address or not path:
            raise CliError(f"--contract {spec!r}: write it as ADDR=FILE")
        if address == main or address in out:
            raise CliError(f"--contract {spec!r}: address {address!r} is given twice")
        out[address] = read_code(Path(path))
    return out


def _init(engine: Any, address: str, code: bytes, state: MemoryState, codes: Any,
          deployer: str) -> None:
    """Run a contract's `init`, as its deploy would, unless the state already has it."""
    from engine import Context, Job

    if state.data.get(address) or "init" not in engine.validate(code).entry_points:
        return
    job = Job(f"init:{address}", address, "init", b"", engine.settings.default_fee_limit,
              Context(deployer))
    result = engine.execute(job, state, codes, deploy=True)
    if result.status != "ok":
        raise CliError(f"--contract {address}: init ended {result.status}: "
                       f"{(result.error or {}).get('message', '')}")
    state.apply(address, result.write_set)


def run(args: argparse.Namespace) -> int:
    from engine import Context, Job, MemoryCode, WasmEngine

    # Every argument is checked before the engine starts.
    function = args.function or args.function_option
    if not function:
        raise CliError("name the entry point: wesfarm run FILE FUNCTION")
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise CliError(str(exc)) from None
    code = read_code(args.contract)
    if args.input_file:
        try:
            data = args.input_file.read_bytes()
        except OSError as exc:
            raise CliError(f"--input-file {args.input_file}: {exc.strerror or exc}") from None
    else:
        data = parse_hex(args.input_hex, "--input-hex")
    address = args.address or args.contract.stem
    others = _other_contracts(args.others, address)
    state = _state(args.state)
    codes = MemoryCode()
    codes.deploy(address, code)
    engine = WasmEngine(settings)
    try:
        for other, other_code in others.items():
            codes.deploy(other, other_code)
            _init(engine, other, other_code, state, codes, args.caller)
        raw_job = Job(
            tx_id="run", contract=address, function=function, input=data,
            fee_limit=args.fee_limit if args.fee_limit is not None else settings.default_fee_limit,
            context=Context(args.caller, args.height, args.time), mode=args.mode,
            timeout_ms=args.timeout_ms,
        ).to_wire()
        result = _interruptible(lambda: engine.execute_wire(raw_job, state, codes))
    finally:
        engine.shutdown()
    unsaved = None
    writes = result.writes_by_contract(address)
    if args.state and result.status == "ok" and args.mode == "call" and (writes or others):
        for contract, written in writes.items():
            state.apply(contract, written)
        try:
            state.save_json(args.state)
        except OSError as exc:  # the Result is printed all the same, then the error
            unsaved = f"--state {args.state}: not written: {exc.strerror or exc}"
    if args.json:
        print(result.to_json_text())
    else:
        print_summary(result.to_json())
    if unsaved:
        raise CliError(unsaved, EXIT_FAILED)
    return EXIT_OK


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
    calls = r.get("calls", {})
    for contract, written in calls.get("write_sets", {}).items():
        for key, value in written.items():
            print(f"call write   {contract} {key} = {value if value is not None else '(removed)'}")
    for contract, topic, data in calls.get("events", []):
        print(f"call event   {contract} {topic} {data}")
    for contract, reads in calls.get("read_sets", {}).items():
        for key, version in reads.items():
            print(f"call read    {contract} {key} @ version {version}")
