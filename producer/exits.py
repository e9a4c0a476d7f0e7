"""How a `wesfarm` command ends: its exit codes and the one-line error (no traceback).

    0  done (for `run`, `call`, `submit`: a Result was produced, whatever its status)
    1  failed: Redis unreachable, a block not committed, a state check that failed
    2  usage: a bad argument, setting, file or contract
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import sys

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """Stop the command with a one-line message on stderr and an exit code.

    Any exception with an `exit_code` ends a command that way (producer/cli.py): the
    error policy lives on the class (FarmUnavailable, SettingsError carry theirs)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = code


def err(message: str) -> None:
    print(f"wesfarm: {message}", file=sys.stderr)
