"""The wesfarm worker: arq job functions, the executor subprocess pool, Redis I/O for
code, state and results, and the metrics endpoint.

Producers import only `worker.protocol` (the wire contract). The package's own public
API -- run a worker, build one's arq settings, read the farm's state the way an executor
does -- is loaded on first use, so that
importing the protocol loads nothing else of the worker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.arq_config import worker_kwargs
    from worker.arq_keys import namespace_arq
    from worker.claim import ClaimingWorker
    from worker.main import run_worker
    from worker.sources import RedisSources

_EXPORTS = {"ClaimingWorker": "worker.claim", "worker_kwargs": "worker.arq_config",
            "run_worker": "worker.main", "RedisSources": "worker.sources",
            "namespace_arq": "worker.arq_keys"}
__all__ = ["ClaimingWorker", "RedisSources", "namespace_arq", "run_worker", "worker_kwargs"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'worker' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
