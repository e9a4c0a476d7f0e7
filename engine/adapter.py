"""The seed's EngineAdapter interface and the engine registry keyed by engine type."""

from __future__ import annotations

from typing import Any, Protocol

from config import Settings
from engine.model import Job, Result
from engine.state import CodeSource, StateView


class EngineAdapter(Protocol):
    engine_type: str

    def execute(self, job: Job, state: StateView, codes: CodeSource) -> Result: ...

    def get_metrics(self) -> dict[str, Any]: ...

    def shutdown(self) -> None: ...


def _wasm(settings: Settings) -> EngineAdapter:
    from engine.runtime import WasmEngine

    return WasmEngine(settings)


ENGINES = {"wasm": _wasm}


def initialize(settings: Settings, engine_type: str = "wasm") -> EngineAdapter:
    """Create and start the engine registered under `engine_type`."""
    try:
        factory = ENGINES[engine_type]
    except KeyError:
        raise ValueError(f"unknown engine type {engine_type!r}; known: {sorted(ENGINES)}") from None
    return factory(settings)
