"""`wesfarm submit BLOCK.jsonl`: execute a block on the farm, wait, summarize (and commit)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from producer.cliutil import (
    EXIT_FAILED,
    EXIT_OK,
    CliError,
    check_job_args,
    cli_settings,
    err,
    run_async,
    settings_and_url,
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "submit", help="execute a block of transactions (JSON lines) on the farm",
        description="Each line of BLOCK.jsonl: {\"tx_id\", \"contract\", \"function\", "
        "\"input\" (hex), \"fee_limit\", \"caller\"}. Shows progress on stderr, then a "
        "summary; with --json, one Result per line in block order instead (with "
        "--commit: each tx's committed Result, re-executed where its reads went stale, "
        "then the commit record as one JSON object).",
    )
    p.add_argument("block", type=Path, metavar="BLOCK.jsonl",
                   help="the block: one tx per line (examples/blocks/token.jsonl)")
    p.add_argument("--height", type=int, default=None, metavar="H",
                   help="block height (default: the one after the last committed block)")
    p.add_argument("--time", type=int, default=None, metavar="MS",
                   help="block time, Unix ms (default: now)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="txs per worker job (default: WESFARM_BATCH_SIZE; 1: one job per tx)")
    p.add_argument("--wait", type=float, default=None, metavar="S",
                   help="stop waiting after S seconds (default: wait until done)")
    p.add_argument("--json", action="store_true", help="one Result per line, in block order")
    p.add_argument("--commit", action="store_true",
                   help="commit the block's results in order (re-executing stale txs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return run_async(lambda: _submit(args))


async def _submit(args: argparse.Namespace) -> int:
    from producer.block import BlockError, load_block
    from producer.client import FarmClient, WaitTimeout
    from producer.errors import refuse_reused
    from producer.report import ProgressBar, render_record, render_summary, summarize

    if args.batch_size is not None and args.batch_size <= 0:
        raise CliError("--batch-size must be positive")
    settings = cli_settings()
    try:
        txs = load_block(args.block, settings.limits.max_fee_limit)
    except BlockError as exc:
        raise CliError(str(exc)) from None
    check_job_args(settings, height=args.height, block_time=args.time)
    settings, url = settings_and_url(settings)
    block_time = args.time if args.time is not None else int(time.time() * 1000)
    seen: dict[str, float] = {}
    async with FarmClient(settings, url) as farm:
        height = args.height if args.height is not None else await farm.next_height()
        jobs = [tx.job(height, block_time, settings.default_fee_limit) for tx in txs]
        tx_ids = [job.tx_id for job in jobs]
        started = time.monotonic()
        if args.commit:  # what follows a declared write is left to the commit
            sent = await farm.submit_block(jobs, args.batch_size)
        else:
            sent = await farm.submit_batch(jobs, args.batch_size)
        bar = None if args.quiet else ProgressBar(len(sent))
        watchdog = asyncio.create_task(_warn_without_workers(farm))
        try:
            results = await farm.wait(sent, timeout=args.wait, progress_cb=bar, seen=seen)
            missing: list[str] = []
        except WaitTimeout as exc:
            results, missing = exc.done, exc.missing
        finally:
            watchdog.cancel()
            if bar is not None:
                bar.finish()
        elapsed = time.monotonic() - started
        refuse_reused(jobs, results)
        if args.json and not (args.commit and not missing):
            _print_results(tx_ids, results)
        elif not args.json:
            latencies = [seen[t] - started for t in sent if t in seen]
            print(render_summary(summarize(sent, results, elapsed, latencies)))
        if missing:
            err(f"{len(missing)} tx(s) had no result after {args.wait:g} s "
                f"(first: {missing[0]}); they may still run")
            if args.commit:
                err("not committing an incomplete block")
            return EXIT_FAILED
        if args.commit:
            from producer.errors import CommitError

            try:
                report = await farm.commit_block(jobs, results, height)
            except CommitError as exc:
                raise CliError(f"commit failed: {exc}", EXIT_FAILED) from None
            if args.json:
                _print_results(tx_ids, {**results, **report.results})
                print(json.dumps(report.record()))
            else:
                print(render_record(report.record(), report.seconds))
    return EXIT_OK


def _print_results(tx_ids: list[str], results: dict[str, Any]) -> None:
    for tx_id in tx_ids:
        if tx_id in results:
            print(results[tx_id].to_json_text())


async def _warn_without_workers(farm: Any) -> None:
    await asyncio.sleep(5)
    if not await farm.workers_alive():
        err(f"waiting: no worker reports health on queue {farm.queue!r} "
            "(start one with `wesfarm worker`)")


