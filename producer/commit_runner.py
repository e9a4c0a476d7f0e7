"""Block commits off the producer's event loop, in a child process.

A commit re-executes a block's stale txs in-process (wasm plus Python: for a block of
hot accounts, nearly every tx). Run in a thread of the producer it holds the GIL for
most of its length, and every step of the producer's event loop (an enqueue, each
read of the fee stream, each MGET of results) then waits its turn for the GIL behind
it: the loop crawls for the whole commit, and results already written are seen late.
So the commit runs in one long-lived child, `python -m producer.commit_runner FD` (a
fresh interpreter, as the executors are: multiprocessing's spawn would run the
producer's main script again in it), with its own engine (the same settings and
artifact cache) and Redis connection, over a socket with multiprocessing.connection's
framing. The parent sends the block's jobs as packed rows (Job.to_row: a fraction of
pickle's cost) and the farm's results pickled, CHUNK txs at a time with the event loop
run between chunks (a block at once would stall it), and only the re-executed results
come back, as the bytes the commit stored: the parent decodes one when it is asked for
(CommittedResults).

The child serves every FarmClient of the process, one commit at a time (the engine
took one call at a time before too), and is started on the first commit. A child that
dies mid-commit is replaced and the commit run again with `resume`: it skips what the
dead one applied.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import os
import pickle
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.model import Job, Result, pack, unpack
from producer.commit_record import CommitReport, CommittedResults

if TYPE_CHECKING:
    from config import Settings
    from producer.local_engine import LocalEngine

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 256  # txs pickled between two turns of the event loop
MAX_ENGINES = 4  # in the child: one engine per settings (a FarmClient's), the last few


class _Child:
    def __init__(self) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, env.get(
            "PYTHONPATH", "").split(os.pathsep))])
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "producer.commit_runner", str(child.fileno())],
                pass_fds=(child.fileno(),), env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.conn = Connection(parent.detach())

    def close(self) -> None:
        self.conn.close()  # the child's next read ends it
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_child: _Child | None = None
_lock = threading.Lock()


def _call(request: bytes) -> bytes:
    """One request to the child (started if need be); blocking, run in a thread. A
    child that dies meanwhile raises EOFError or OSError and is dropped."""
    global _child
    with _lock:
        if _child is None or _child.proc.poll() is not None:
            _child = _Child()
        try:
            _child.conn.send_bytes(request)
            return _child.conn.recv_bytes()
        except (EOFError, OSError):
            _child.close()
            _child = None
            raise


@atexit.register
def shutdown() -> None:
    """Stop the child (after the commit under way, if any)."""
    global _child
    with _lock:
        if _child is not None:
            _child.close()
            _child = None


async def commit_in_child(settings: Settings, url: str, jobs: Sequence[Job],
                          results: Mapping[str, Result], height: int) -> CommitReport:
    """producer.commit.commit_block in the child, through a Redis outage as before."""
    job_parts = await _in_chunks(jobs, _job_rows)
    result_parts = await _in_chunks([(j.tx_id, results[j.tx_id]) for j in jobs
                                     if j.tx_id in results], _pickle)
    for resume in (False, True):
        request = pickle.dumps((settings, url, job_parts, result_parts, height, resume),
                               pickle.HIGHEST_PROTOCOL)
        try:
            reply = await asyncio.to_thread(_call, request)
            break
        except (EOFError, OSError):
            if resume:
                raise
    ok, value = pickle.loads(reply)
    if not ok:
        raise value
    raw, order, packed_parts, fetched_parts = value
    report: CommitReport = pickle.loads(raw)
    report.packed = dict(await _unpickled(packed_parts))
    fetched = dict(await _unpickled(fetched_parts))
    report.results = CommittedResults(order, report.packed, {**results, **fetched})
    return report


async def _in_chunks(items: Sequence[Any], encode: Callable[[Sequence[Any]], bytes]
                    ) -> list[bytes]:
    """`items` encoded CHUNK at a time, the event loop run between two chunks."""
    parts = []
    for i in range(0, len(items), CHUNK):
        parts.append(encode(items[i : i + CHUNK]))
        await asyncio.sleep(0)
    return parts


def _pickle(items: Sequence[Any]) -> bytes:
    return pickle.dumps(list(items), pickle.HIGHEST_PROTOCOL)


def _job_rows(jobs: Sequence[Job]) -> bytes:
    return pack([job.to_row() for job in jobs])


async def _unpickled(parts: list[bytes]) -> list[Any]:
    items: list[Any] = []
    for part in parts:
        items += pickle.loads(part)
        await asyncio.sleep(0)
    return items


# -- the child ------------------------------------------------------------------------------

_engines: dict[str, LocalEngine] = {}


def _engine(settings: Settings) -> LocalEngine:
    from producer.local_engine import LocalEngine

    key = settings.model_dump_json()
    if key not in _engines:
        while len(_engines) >= MAX_ENGINES:
            _engines.pop(next(iter(_engines))).close()
        _engines[key] = LocalEngine(settings)
    return _engines[key]


def _commit(settings: Settings, url: str, job_parts: list[bytes], result_parts: list[bytes],
            height: int, resume: bool) -> tuple[bytes, list[str], list[bytes], list[bytes]]:
    """The commit, retried through an outage (a retry resumes). Returns the report
    without its results, the committed tx ids in order, and in pickled chunks the results
    that differ from the farm's: the re-executed ones packed (CommitReport.packed), the
    stored ones it fetched as Results."""
    import redis

    from producer.commit import commit_block
    from producer.retrying import retrying_sync
    from worker.protocol import Keys

    jobs = [Job.from_row(row) for part in job_parts for row in unpack(part)]
    results: dict[str, Result] = {t: r for part in result_parts for t, r in pickle.loads(part)}
    engine, keys = _engine(settings), Keys(settings.key_prefix)
    attempts = 0

    def attempt() -> CommitReport:
        nonlocal attempts
        attempts += 1
        client = redis.Redis.from_url(url)
        try:  # a retry may find the block committed by the try whose reply was lost
            return commit_block(client, keys, engine, jobs, results, height,
                                resume=resume or attempts > 1,
                                retention=(settings.result_ttl_s, settings.fee_stream_max))
        finally:
            client.close()

    report = retrying_sync(attempt, url, settings.redis_patience_s, "commit")
    order = list(report.results)
    packed = list(report.packed.items())  # bytes: unpickling Results cost the parent more
    fetched = [(t, report.results[t]) for t in order if t not in report.packed
               and t not in results]  # stored Results it found for txs it was to run
    report.results, report.packed = {}, {}
    return (pickle.dumps(report, pickle.HIGHEST_PROTOCOL), order, _chunks(packed),
            _chunks(fetched))


def _chunks(items: list[Any]) -> list[bytes]:
    return [_pickle(items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)]


FULL_COLLECT_EVERY = 64


def main(fd: int) -> None:
    """Serve commit requests until the parent closes the connection. The cyclic garbage
    collector runs between commits, not in them: a commit allocates a block's worth of
    objects, and collections in the middle of it slow it (README, Performance);
    reference counting still frees nearly everything as it goes. Between commits only
    the young generations are collected (what a commit left), the whole heap -- the
    engine and its modules, tens of ms to walk -- once every FULL_COLLECT_EVERY."""
    conn = Connection(fd)
    gc.disable()
    served = 0
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[bool, Any] = (True, _commit(*pickle.loads(request)))
            data = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # raised in the parent (CommitError, FarmUnavailable ...)
            try:
                data = pickle.dumps((False, exc), pickle.HIGHEST_PROTOCOL)
                pickle.loads(data)  # what the parent will do with it
            except Exception:
                data = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        conn.send_bytes(data)
        del request, data
        served += 1
        gc.collect(2 if served % FULL_COLLECT_EVERY == 0 else 1)


if __name__ == "__main__":
    main(int(sys.argv[1]))
