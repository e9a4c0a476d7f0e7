"""Checks of the committed state that several test files make."""

from __future__ import annotations

import redis

from producer import state_root
from producer.committed_state import rebuilt_state_root
from worker.protocol import Keys


def assert_root_exact(client: redis.Redis, keys: Keys) -> None:
    """The stored state root is known, and is the root of the whole state from scratch."""
    stored = client.get(keys.root)
    assert stored is not None, "the state root is not known"
    assert state_root.from_bytes(stored) == rebuilt_state_root(client, keys)  # type: ignore[arg-type]
