"""Shared plumbing for the producer's subcommands: settings, Redis reachability, errors."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from config import DEFAULT_REDIS_URL, Settings, SettingsError, load_settings
from producer.devfarm import answers
from producer.errors import FarmUnavailable

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """Stop the command with a one-line message on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def err(message: str) -> None:
    print(f"wesfarm: {message}", file=sys.stderr)


def cli_settings(**overrides: object) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise CliError(str(exc)) from None


def settings_and_url(settings: Settings | None = None) -> tuple[Settings, str]:
    """Settings from WESFARM_* and the Redis URL (WESFARM_REDIS_URL, else localhost:6379)."""
    settings = settings or cli_settings()
    url = settings.redis_url or DEFAULT_REDIS_URL
    if url.startswith("redis://") and not answers(url, timeout=1.0):
        hint = "" if settings.redis_url else " (set WESFARM_REDIS_URL to point at the farm's Redis)"
        raise CliError(f"cannot reach Redis at {url}{hint}", EXIT_FAILED)
    return settings, url


def read_code(path: Path) -> bytes:
    """A module from a .wasm file, or a .wat file converted with wasmtime.wat2wasm."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}") from None
    if path.suffix == ".wat" or (not data.startswith(b"\x00asm") and data.lstrip()[:1] == b"("):
        import wasmtime

        try:
            return bytes(wasmtime.wat2wasm(data.decode("utf-8")))
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CliError(f"{path}: not valid WAT: {first}") from None
    return data


def parse_hex(text: str, what: str) -> bytes:
    body = text[2:] if text[:2] in ("0x", "0X") else text
    try:
        return bytes.fromhex(body)
    except ValueError:
        raise CliError(f"{what} is not valid hex: {text[:40]!r}") from None


def run_async(make: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine; CliError -> message + code, Ctrl-C -> 130. Warnings
    (Redis away, retrying) are lines like the errors."""
    logging.basicConfig(format="wesfarm: %(message)s", level=logging.WARNING)
    try:
        return asyncio.run(_call(make))
    except CliError as exc:
        err(str(exc))
        return exc.code
    except FarmUnavailable as exc:
        err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:  # `wesfarm submit --json | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


async def _call(make: Callable[[], Awaitable[int]]) -> int:
    return await make()
