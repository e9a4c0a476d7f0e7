"""The epoch ticker: wasmtime's epoch advanced every tick, what job deadlines count in."""

from __future__ import annotations

import threading

import wasmtime


class EpochTicker(threading.Thread):
    """Advances the engine's epoch every tick; deadlines are counted in ticks.

    Holds the engine strongly and lets go of it only after its last tick, in its own
    thread: an engine freed while another thread ticks it is a use after free (Python
    runs an object's finalizer, which frees the native engine with the GIL released,
    before it clears weak references to it). The WasmEngine stops it when shut down or
    collected."""

    def __init__(self, engine: wasmtime.Engine, tick_ms: int) -> None:
        super().__init__(name="wesfarm-epoch", daemon=True)
        self.engine: wasmtime.Engine | None = engine
        self.tick = tick_ms / 1000
        self.stopped = threading.Event()

    def run(self) -> None:
        engine, self.engine = self.engine, None
        assert engine is not None
        while not self.stopped.wait(self.tick):
            engine.increment_epoch()
