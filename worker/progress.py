"""Which tx an executor is on: 24 bytes of shared memory the executor writes as it starts
each tx of a request (the request, the tx's index, the CLOCK_MONOTONIC time it started),
and its worker reads when a hard deadline comes due.

A request's hard limit is then per tx -- that tx's timeout plus the grace, from when it
started -- not the sum over the request: a stuck executor is noticed within about one
tx timeout, and the txs it had not reached were never its to fail. It costs the executor
one memory store per tx (no syscall, no message).
"""

from __future__ import annotations

import mmap
import os
import struct
import time

# request sequence number, index of the tx started, when (time.monotonic(): the same
# clock as the worker's event loop, shared by every process of the host)
_LAYOUT = struct.Struct("<QQd")


class Progress:
    """One executor's progress page; `fd` is what the child maps (pass it to it)."""

    def __init__(self, fd: int | None = None) -> None:
        self.owner = fd is None
        self.fd = os.memfd_create("wesfarm-progress", 0) if fd is None else fd
        if self.owner:
            os.ftruncate(self.fd, _LAYOUT.size)
        self.map = mmap.mmap(self.fd, _LAYOUT.size)

    def mark(self, request: int, index: int) -> None:
        _LAYOUT.pack_into(self.map, 0, request, index, time.monotonic())

    def read(self) -> tuple[int, int, float]:
        request, index, started = _LAYOUT.unpack_from(self.map, 0)
        return int(request), int(index), float(started)

    def close(self) -> None:
        self.map.close()
        if self.owner:
            os.close(self.fd)
