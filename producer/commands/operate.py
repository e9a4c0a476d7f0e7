"""`wesfarm status` (the farm at a glance), `wesfarm clean` (delete a farm's keys) and
`wesfarm migrate-results` (Results of before part records)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from producer.cliutil import EXIT_FAILED, EXIT_OK, CliError, settings_and_url


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status", help="the farm at a glance: workers, queue, last minute, last block",
        description="Workers alive with their executors and versions, the queue's depth, "
        "the last minute's txs by status (from the fee stream), the last committed block "
        "and its state root.")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.set_defaults(handler=run_status)
    c = sub.add_parser(
        "clean", help="delete every key of this farm (its prefix) from Redis",
        description="Delete every key under WESFARM_KEY_PREFIX (state, code, results, "
        "fees, blocks, arq's keys) and the farm's queue. --dry-run counts them by kind; "
        "without it, --yes is required. Stop the workers first.")
    c.add_argument("--dry-run", action="store_true", help="count what would be deleted")
    c.add_argument("--yes", action="store_true", help="really delete (state included)")
    c.add_argument("--json", action="store_true", help="print exactly one JSON object")
    c.set_defaults(handler=run_clean)
    m = sub.add_parser(
        "migrate-results", help="move Results stored a key per tx into part records",
        description="Results written before part records (`{prefix}:result:{tx id}`) are "
        "read by nothing now: move them into parts and the index, their expiry and fee "
        "records kept. Stop the workers first; run once per farm.")
    m.set_defaults(handler=run_migrate)


def _client() -> tuple[Any, Any, str]:
    import redis

    from worker.protocol import Keys

    settings, url = settings_and_url()
    return redis.Redis.from_url(url), Keys(settings.key_prefix), settings.queue_name


def run_status(args: argparse.Namespace) -> int:
    from producer.operations import farm_status, render_status

    client, keys, queue = _client()
    with client:
        status = farm_status(client, keys, queue)
    print(json.dumps(status) if args.json else render_status(status))
    return EXIT_OK


def run_migrate(args: argparse.Namespace) -> int:
    import redis

    from producer.migrate import migrate_results
    from worker.protocol import Keys

    settings, url = settings_and_url()
    keys = Keys(settings.key_prefix)
    with redis.Redis.from_url(url) as client:
        moved = migrate_results(client, keys, settings.result_ttl_s)
    print(f"moved {moved:,} Results of farm {keys.prefix!r} into part records")
    return EXIT_OK


def run_clean(args: argparse.Namespace) -> int:
    from producer.operations import delete, farm_keys, kinds

    client, keys, queue = _client()
    with client:
        found = farm_keys(client, keys, queue)
        by_kind = kinds(found, keys)
        if args.dry_run or not found:
            out = {"prefix": keys.prefix, "keys": len(found), "by_kind": by_kind,
                   "deleted": 0}
        elif not args.yes:
            raise CliError(f"this deletes {len(found):,} keys of farm {keys.prefix!r}, its "
                           "committed state included: pass --yes (or --dry-run to count them)")
        else:
            out = {"prefix": keys.prefix, "keys": len(found), "by_kind": by_kind,
                   "deleted": delete(client, found)}
    if args.json:
        print(json.dumps(out))
    else:
        what = ", ".join(f"{k} {v}" for k, v in by_kind.items()) or "none"
        verb = "deleted" if out["deleted"] else "would delete" if found else "nothing to delete"
        print(f"{verb}: {len(found):,} keys of farm {keys.prefix!r} ({what})")
    return EXIT_OK if out["deleted"] == len(found) or args.dry_run else EXIT_FAILED
