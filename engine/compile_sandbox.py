"""The compile wall: every module is compiled in a child process with a time and memory cap.

The compile budget (engine/budget.py) keeps the compiler's superlinear cases out; this is
the wall behind it, for whatever shape the budget misses. Past the cap the child is
killed and the module refused; under a memory rlimit wasmtime aborts the process rather
than raising, so the child, not an executor, is what dies.

One child per process and engine configuration, started on first use and kept: it reads
a module, compiles it with the same configuration as the engine that asked (minus the
pooling allocator, which does not change the code: artifacts load into either), and
sends back the serialized artifact. Framing on its stdin/stdout: a 4-byte big-endian
length, then the bytes; a reply starts with one status byte.

    python -m engine.compile_child       (the child; its first frame is the settings JSON)
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, ClassVar

from config import Settings
from engine.compiler import build_config, compile_module
from engine.errors import InternalError, InvalidJob, Rejected

OK, REJECTED, INVALID = 0, 1, 2
READY = b"R"
START_TIMEOUT_S = 60.0
ROOT = Path(__file__).resolve().parent.parent


def _frame(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class CompileWall(Rejected):
    """The module took more time or memory to compile than the wall allows."""


class CompileSandbox:
    """The compile child for one engine configuration (shared by every engine of this
    process with that configuration; one compile at a time)."""

    _children: ClassVar[dict[str, CompileSandbox]] = {}
    _registry = threading.Lock()

    def __init__(self, settings_json: str, timeout_s: float, memory_mb: int) -> None:
        self.settings_json = settings_json
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings) -> CompileSandbox:
        """The (shared) sandbox that compiles for engines with these settings."""
        knobs = settings.model_dump(mode="json", include={"compiler", "opt_level", "limits"})
        key = json.dumps([knobs, settings.compile_timeout_ms, settings.compile_memory_mb],
                         sort_keys=True)
        with cls._registry:
            sandbox = cls._children.get(key)
            if sandbox is None:
                sandbox = cls._children[key] = cls(
                    json.dumps(knobs), settings.compile_timeout_ms / 1000,
                    settings.compile_memory_mb)
            return sandbox

    def _start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.compile_child", str(self.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=str(ROOT))
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(_frame(self.settings_json.encode()))
        proc.stdin.flush()
        # The wall's clock starts once the child is ready: its start-up is not the module's.
        ready, _, _ = select.select([proc.stdout.fileno()], [], [], START_TIMEOUT_S)
        if not ready or proc.stdout.read(1) != READY:
            proc.kill()
            proc.wait()
            raise InternalError("the compile child did not start")
        return proc

    def compile(self, code: bytes) -> bytes:
        """The serialized artifact of `code`, or Rejected/InvalidJob as compiling in-process
        would raise them, or CompileWall."""
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = self._start()
            proc = self.proc
            assert proc.stdin is not None and proc.stdout is not None
            started = time.monotonic()
            try:
                proc.stdin.write(_frame(code))
                proc.stdin.flush()
                status, payload = self._reply(proc, started)
            except (OSError, EOFError):
                self._kill()
                if time.monotonic() - started >= self.timeout_s:
                    raise self._wall() from None
                raise CompileWall("the compiler ran out of memory or crashed on this module "
                                  f"(the compile wall: {self.memory_mb} MB)",
                                  "compile_wall") from None
        if status == OK:
            return payload
        message = payload.decode("utf-8", "replace")
        if status == REJECTED:
            raise Rejected(message, "feature")
        raise InvalidJob(message, "bad_module")

    def _reply(self, proc: subprocess.Popen[bytes], started: float) -> tuple[int, bytes]:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        left = self.timeout_s - (time.monotonic() - started)
        readable, _, _ = select.select([fd], [], [], max(0.0, left))
        if not readable:
            self._kill()
            raise self._wall()
        head = _read_exact(proc.stdout, 5)
        return head[0], _read_exact(proc.stdout, struct.unpack(">I", head[1:])[0])

    def _wall(self) -> CompileWall:
        return CompileWall(f"compiling took longer than {self.timeout_s:g} s (the compile wall)",
                           "compile_wall")

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    import wasmtime

    knobs = json.loads(_read_exact(stdin, struct.unpack(">I", _read_exact(stdin, 4))[0]))
    settings = Settings(**knobs, pooling_allocator=False)
    engine = wasmtime.Engine(build_config(settings))
    stdout.write(READY)
    stdout.flush()
    while True:
        try:
            size = struct.unpack(">I", _read_exact(stdin, 4))[0]
        except EOFError:
            return
        code = _read_exact(stdin, size)
        try:
            status, payload = OK, bytes(compile_module(engine, code).serialize())
        except Rejected as exc:
            status, payload = REJECTED, exc.message.encode()
        except InvalidJob as exc:
            status, payload = INVALID, exc.message.encode()
        stdout.write(bytes([status]) + struct.pack(">I", len(payload)) + payload)
        stdout.flush()


def serve_main() -> int:
    """The child's main: cap its memory, then compile what arrives until EOF."""
    memory = int(sys.argv[1]) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)  # an executor's own limit is inherited: never above it
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    with contextlib.suppress(BrokenPipeError, KeyboardInterrupt):
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    return 0
