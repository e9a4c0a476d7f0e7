"""The block builder's own engine: validation and `init` at deploy, precompiling, and the
re-execution of stale transactions at commit. Built on first use (a WasmEngine costs a
wasmtime engine and an epoch thread); one call at a time, from any thread.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from config import Settings
from engine.model import Job, ModuleInfo, Result
from engine.state import CodeSource, StateView

if TYPE_CHECKING:
    from engine.runtime import WasmEngine


class LocalEngine:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: WasmEngine | None = None
        self._lock = threading.Lock()

    def _get(self) -> WasmEngine:
        if self._engine is None:
            from engine.runtime import WasmEngine

            self._engine = WasmEngine(self.settings)
        return self._engine

    def validate(self, code: bytes) -> ModuleInfo:
        """Policy + compile; raises Rejected / InvalidJob naming the problem."""
        with self._lock:
            return self._get().validate(code)

    def precompile(self, code: bytes) -> str:
        """Compile into this host's artifact cache; the code hash."""
        with self._lock:
            return self._get().precompile(code)

    def execute(self, job: Job, state: StateView, codes: CodeSource) -> Result:
        with self._lock:
            return self._get().execute(job, state, codes)

    def run_init(self, job: Job, state: StateView, codes: CodeSource) -> Result:
        """The contract's `init`, as part of deploying it (the only time it may run)."""
        with self._lock:
            return self._get().execute(job, state, codes, deploy=True)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.shutdown()
                self._engine = None
