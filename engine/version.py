"""One line naming what a process runs: the release and what consensus depends on beside
it (ABI, wasmtime, fee schedule). `wesfarm --version` prints it; workers advertise it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from engine.abi import ABI_VERSION


def version_line(fee_schedule: str) -> str:
    try:
        release = version("wesfarm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "(source)"
    return (f"wesfarm {release} (ABI {ABI_VERSION}, wasmtime "
            f"{version('wasmtime')}, fee schedule {fee_schedule})")
