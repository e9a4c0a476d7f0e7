"""The block builder's side: FarmClient (and its blocking twin), blocks, commit, a
development farm, and the `wesfarm` CLI. Loaded on first use: `wesfarm run` imports
this package and must not pay for Redis or arq.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producer.block import Tx
    from producer.client import FarmClient
    from producer.commit_record import CommitReport
    from producer.committed_state import (
        memory_state_root,
        redis_state_items,
        redis_state_root,
        state_root_of,
        write_genesis,
    )
    from producer.deploy import Deployment
    from producer.devfarm import EmbeddedRedis, LocalFarm, resolve_redis
    from producer.enqueue import ArqJob, PipelinedEnqueuer
    from producer.errors import DeployError, JobIdTaken, WaitTimeout
    from producer.sync_client import SyncFarmClient

_EXPORTS = {
    "Tx": "producer.block", "FarmClient": "producer.client",
    "CommitReport": "producer.commit_record",
    "memory_state_root": "producer.committed_state",
    "redis_state_items": "producer.committed_state",
    "redis_state_root": "producer.committed_state",
    "state_root_of": "producer.committed_state", "write_genesis": "producer.committed_state",
    "Deployment": "producer.deploy", "EmbeddedRedis": "producer.devfarm",
    "LocalFarm": "producer.devfarm", "resolve_redis": "producer.devfarm",
    "ArqJob": "producer.enqueue", "PipelinedEnqueuer": "producer.enqueue",
    "DeployError": "producer.errors", "JobIdTaken": "producer.errors",
    "WaitTimeout": "producer.errors", "SyncFarmClient": "producer.sync_client",
}
__all__ = [
    "ArqJob", "CommitReport", "DeployError", "Deployment", "EmbeddedRedis", "FarmClient",
    "JobIdTaken", "LocalFarm", "PipelinedEnqueuer", "SyncFarmClient", "Tx", "WaitTimeout",
    "memory_state_root", "redis_state_items", "redis_state_root", "resolve_redis",
    "state_root_of", "write_genesis",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'producer' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
