"""`wesfarm worker`: run one worker (arq on uvloop) with N executor subprocesses."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from config import DEFAULT_REDIS_URL, SettingsError, load_settings
from config.environment import masked_url


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help="run a worker: executes jobs from the Redis queue",
        description="Run one worker. Redis from WESFARM_REDIS_URL (else localhost:6379); "
        "queue, key prefix and limits from WESFARM_* settings (see `wesfarm config`). "
        "SIGTERM/SIGINT drain running jobs, then stop.",
    )
    parser.add_argument(
        "--executors",
        type=int,
        metavar="N",
        help="executor subprocesses (default: settings.executors, CPU count)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="Prometheus endpoint port, 0 for none (default: settings.metrics_port)",
    )
    parser.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much the worker logs (DEBUG: every job, as arq does)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if args.log_level != "DEBUG":  # arq logs every job start and end at INFO
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
    overrides: dict[str, Any] = {}
    if args.executors is not None:
        overrides["executors"] = args.executors
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"wesfarm worker: {exc}", file=sys.stderr)
        return 2
    url = settings.redis_url or DEFAULT_REDIS_URL
    if not _answers(url):  # at once, not after arq's minutes of retries
        hint = "" if settings.redis_url else " (set WESFARM_REDIS_URL to the farm's Redis)"
        print(f"wesfarm worker: cannot reach Redis at {masked_url(url)}{hint}", file=sys.stderr)
        return 1
    from worker.main import StartupError, run_worker

    try:
        return run_worker(settings, url, burst=args.burst)
    except StartupError as exc:
        print(f"wesfarm worker: {exc}", file=sys.stderr)
        return 1


def _answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
