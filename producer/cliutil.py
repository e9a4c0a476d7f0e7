"""Shared plumbing for the producer's subcommands: settings, Redis reachability, errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from config import DEFAULT_REDIS_URL, Settings, SettingsError, load_settings
from config.environment import masked_url
from producer.devfarm import answers
from producer.exits import EXIT_FAILED as EXIT_FAILED
from producer.exits import EXIT_OK as EXIT_OK
from producer.exits import EXIT_USAGE as EXIT_USAGE
from producer.exits import CliError as CliError
from producer.exits import err as err
from producer.inputs import parse_hex as parse_hex
from producer.inputs import read_code as read_code


def cli_settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None


I64_MAX = 2**63 - 1


def check_job_args(settings: Settings, *, fee_limit: int | None = None, height: int | None = None,
                   block_time: int | None = None, timeout_ms: int | None = None) -> None:
    """A job's arguments, checked before anything connects (CliError naming the first bad
    one and its range)."""
    limits = settings.limits
    if fee_limit is not None and not 0 < fee_limit <= limits.max_fee_limit:
        raise CliError(f"--fee-limit {fee_limit} is outside 1..{limits.max_fee_limit:,} "
                       "(limits.max_fee_limit)")
    if timeout_ms is not None and not 0 < timeout_ms <= limits.max_timeout_ms:
        raise CliError(f"--timeout-ms {timeout_ms} is outside 1..{limits.max_timeout_ms:,} "
                       "(limits.max_timeout_ms)")
    for name, value in (("--height", height), ("--time", block_time)):
        if value is not None and not 0 <= value <= I64_MAX:
            raise CliError(f"{name} {value} is outside 0..{I64_MAX}")


def settings_and_url(settings: Settings | None = None) -> tuple[Settings, str]:
    """Settings from WESFARM_* and the Redis URL (WESFARM_REDIS_URL, else localhost:6379)."""
    settings = settings or cli_settings()
    url = settings.redis_url or DEFAULT_REDIS_URL
    if url.startswith("redis://") and not answers(url, timeout=1.0):
        hint = "" if settings.redis_url else " (set WESFARM_REDIS_URL to point at the farm's Redis)"
        raise CliError(f"cannot reach Redis at {masked_url(url)}{hint}", EXIT_FAILED)
    return settings, url


def run_async(make: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine. Warnings (Redis away, retrying) are lines like the
    errors."""
    logging.basicConfig(format="wesfarm: %(message)s", level=logging.WARNING)
    return asyncio.run(_call(make))  # errors, Ctrl-C, a closed pipe: producer/cli.py


async def _call(make: Callable[[], Awaitable[int]]) -> int:
    return await make()
