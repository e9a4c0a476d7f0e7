"""Shared fixtures: a real Redis (this machine's, else an embedded one), a private key
prefix and queue per session, an isolated compile cache, and the example contracts."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from producer.embedded_redis import resolve_redis

# The engine's mechanics are tested against one fixed schedule (the pre-calibration
# prices), so expected fees stay exact whatever the calibrated defaults become; set
# in the environment so worker subprocesses started by tests price alike.
# tests/test_fee_defaults.py checks the shipped defaults themselves.
TEST_FEES = {
    "version": "wes-fee-test", "instruction": 1, "execution": 0, "host_call": 200, "byte_in": 2,
    "byte_out": 2, "storage_read": 2_000, "storage_read_byte": 4, "storage_write": 5_000,
    "storage_write_byte": 40, "event": 500, "event_byte": 10, "hash_byte": 6,
    "memory_page": 5_000, "memory_free_pages": 0, "table_element": 10,
}
for _name, _price in TEST_FEES.items():
    os.environ[f"WESFARM_FEES__{_name.upper()}"] = str(_price)
os.environ["WESFARM_DEFAULT_FEE_LIMIT"] = "10000000"

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "examples" / "contracts"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, server = resolve_redis(os.environ.get("WESFARM_TEST_REDIS_URL"))
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(scope="session")
def key_prefix(redis_url: str) -> Iterator[str]:
    """A prefix no one else uses; every key under it is deleted at the end."""
    import redis

    prefix = f"wesfarm-test-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{prefix}*", f"arq:*{prefix}*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    client.close()


@pytest.fixture()
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture()
def settings(cache_dir: Path) -> Settings:
    """Engine settings with a private artifact cache."""
    return load_settings(cache_dir=cache_dir, executors=2)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[bool, Any]]:
    """One raw-path and one public-path WasmEngine per test module (keyed by raw_calls)."""
    from wat_contracts import close_engine, engine_pair

    pair = engine_pair(tmp_path_factory.mktemp("cache"))
    yield pair
    for engine in pair.values():
        close_engine(engine)


def contract_path(name: str) -> Path:
    return CONTRACTS / name / f"{name}.wasm"
