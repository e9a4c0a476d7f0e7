"""`wesfarm deploy` and `wesfarm call`: one contract, one transaction, through the farm."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from producer.cliutil import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    check_job_args,
    cli_settings,
    err,
    parse_hex,
    read_code,
    run_async,
    settings_and_url,
)


def register(sub: Any) -> None:
    deploy = sub.add_parser(
        "deploy", help="validate a contract and store it at an address",
        description="Validate FILE (.wasm, or .wat converted with wat2wasm) against the "
        "ABI policy, store it by sha256 and bind ADDR to it (once: code is immutable).",
    )
    deploy.add_argument("file", type=Path, metavar="FILE", help="a .wasm or .wat file")
    deploy.add_argument("--address", required=True, metavar="ADDR",
                        help="the address to bind the code to")
    deploy.add_argument("--precompile", action="store_true",
                        help="also compile into this host's artifact cache (workers on this host)")
    deploy.add_argument("--json", action="store_true", help="print the outcome as JSON")
    deploy.set_defaults(handler=run_deploy)

    call = sub.add_parser(
        "call", help="run one transaction on the farm and print its result",
        description="Enqueue one job, wait for its result and print it "
        "(--json: exactly as `wesfarm run --json`). Exit 0 whenever a result was produced.",
    )
    call.add_argument("address", metavar="ADDR", help="the deployed contract's address")
    call.add_argument("function", metavar="FUNCTION", help="the entry point to call")
    call.add_argument("--input-hex", default="", metavar="HEX", help="call input as hex")
    call.add_argument("--fee-limit", type=int, default=None, metavar="N",
                      help="fee units (default: settings' default_fee_limit)")
    call.add_argument("--mode", choices=("call", "view"), default="call",
                      help="view: may not write state or emit events")
    call.add_argument("--caller", default="", metavar="C", help="the caller's address")
    call.add_argument("--tx-id", default=None, help="default: a fresh unique id")
    call.add_argument("--height", type=int, default=0, help="block height in the context")
    call.add_argument("--time", type=int, default=0, metavar="MS", help="block time (Unix ms)")
    call.add_argument("--timeout-ms", type=int, default=None, metavar="MS",
                      help="the job's wall-clock timeout (default: settings)")
    call.add_argument("--wait", type=float, default=None, metavar="S",
                      help="give up waiting after S seconds (default: job timeout + 30 s)")
    call.add_argument("--json", action="store_true", help="print exactly one JSON object")
    call.set_defaults(handler=run_call)


def run_deploy(args: argparse.Namespace) -> int:
    return run_async(lambda: _deploy(args))


async def _deploy(args: argparse.Namespace) -> int:
    from producer.client import DeployError, FarmClient

    code = read_code(args.file)
    settings, url = settings_and_url()
    async with FarmClient(settings, url) as farm:
        try:
            done = await farm.deploy(code, args.address, precompile=args.precompile)
        except DeployError as exc:
            if args.json:
                print(json.dumps({"address": args.address, "status": exc.status,
                                  "reasons": exc.reasons}))
            else:
                err(f"deploy {args.file} at {args.address!r} refused ({exc.status}):")
                for reason in exc.reasons:
                    print(f"  - {reason}", file=sys.stderr)
            return EXIT_FAILED
    if args.json:
        print(json.dumps({"address": done.address, "status": "ok", "code_hash": done.code_hash,
                          "created": done.created, "precompiled": done.precompiled}))
    else:
        what = "deployed" if done.created else "already deployed (same code)"
        print(f"{what}: {done.address} -> {done.code_hash} ({len(code):,} bytes)")
    return EXIT_OK


def run_call(args: argparse.Namespace) -> int:
    return run_async(lambda: _call(args))


async def _call(args: argparse.Namespace) -> int:
    from producer.client import FarmClient, WaitTimeout
    from producer.report import describe_result

    data = parse_hex(args.input_hex, "--input-hex")
    settings = cli_settings()
    check_job_args(settings, fee_limit=args.fee_limit, height=args.height,
                   block_time=args.time, timeout_ms=args.timeout_ms)
    settings, url = settings_and_url(settings)
    timeout = args.wait if args.wait is not None else settings.job_timeout_s + 30
    async with FarmClient(settings, url) as farm:
        if await farm.code_hash(args.address) is None:
            err(f"warning: nothing is deployed at {args.address!r}; the result will be `invalid`")
        task = asyncio.create_task(farm.call(
            args.address, args.function, data, fee_limit=args.fee_limit, mode=args.mode,
            caller=args.caller, tx_id=args.tx_id, block_height=args.height,
            block_time=args.time, timeout_ms=args.timeout_ms, timeout=timeout,
        ))
        warned = False
        while not task.done():
            await asyncio.wait([task], timeout=3.0)
            if not task.done() and not warned and not await farm.workers_alive():
                err(f"waiting: no worker reports health on queue {farm.queue!r} "
                    "(start one with `wesfarm worker`)")
                warned = True
        try:
            result = task.result()
        except WaitTimeout:
            raise CliError(f"no result within {timeout:g} s", EXIT_FAILED) from None
    print(result.to_json_text() if args.json else describe_result(result))
    return EXIT_OK
