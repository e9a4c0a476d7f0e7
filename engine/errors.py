"""The error taxonomy: every result status of ARCHITECTURE.md is one exception type.

Messages name the thing that was wrong and, where there is one, the limit.
"""

from __future__ import annotations

from typing import ClassVar

STATUSES = ("ok", "reverted", "out_of_fee", "trap", "timeout", "invalid", "rejected", "error")


class ExecutionError(Exception):
    """Ends an execution with `status`; `kind` refines it (a trap code, a policy rule...).

    Error policy lives on the class: `charged` (a consensus result, the fee used so far is
    charged; False: never charged, never committed) and `unwinds` (it leaves wasm through
    a trap, whose unwinding is priced per frame)."""

    status: ClassVar[str] = "error"
    charged: ClassVar[bool] = True
    unwinds: ClassVar[bool] = False

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind or self.status


class Reverted(ExecutionError):
    """The contract called `revert`: writes discarded, fee used so far charged."""

    status = "reverted"
    unwinds = True

    def __init__(self, reason: bytes) -> None:
        # The reason bytes are the result's return data; the message is never empty.
        super().__init__(reason.decode("utf-8", "replace") or "reverted (no message)", "revert")
        self.reason = reason


class OutOfFee(ExecutionError):
    """The fee limit was reached: used == limit, writes discarded."""

    status = "out_of_fee"

    def __init__(self, reason: str, needed: int, left: int) -> None:
        super().__init__(f"out of fee: {reason} needs {needed}, {left} left", reason)
        self.reason = reason


class ContractTrap(ExecutionError):
    """A wasm trap (unreachable, out of bounds, stack overflow...) or a host function's trap."""

    status = "trap"
    unwinds = True


class Timeout(ExecutionError):
    """The wall-clock deadline passed. Not a consensus result: never charged, never committed."""

    status = "timeout"
    charged = False


class InvalidJob(ExecutionError):
    """Malformed job, unknown contract, missing entry point, bad module."""

    status = "invalid"
    charged = False


class Rejected(ExecutionError):
    """Policy: a disallowed import, a module too large, a non-deterministic feature."""

    status = "rejected"


class InternalError(ExecutionError):
    """A bug or an environment failure (an executor died): not the contract's fault."""

    status = "error"
    charged = False


BY_STATUS: dict[str, type[ExecutionError]] = {
    cls.status: cls
    for cls in (Reverted, OutOfFee, ContractTrap, Timeout, InvalidJob, Rejected, InternalError)
}


def trap_cause(message: str) -> str:
    """wasmtime's own words for a trap ("integer divide by zero"), not the backtrace."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if "Caused by:" in lines and lines[-1] != "Caused by:":
        return lines[lines.index("Caused by:") + 1].removeprefix("wasm trap: ")
    return lines[0] if lines else "trap"
