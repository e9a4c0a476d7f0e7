"""Shared fixtures: the test fee schedule in the environment for the session, a real Redis
(this machine's, else an embedded one), a private key prefix per session, an isolated
compile cache, and engines.

Markers: `integration` (the test talks to Redis or starts subprocesses; set automatically
for tests that use the Redis fixtures) and `slow` (fault injection; CI runs them, the edit
loop may skip them with `-m "not slow"`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config import Settings, load_settings
from tests.support import TEST_ENV

REDIS_FIXTURES = {"redis_url", "key_prefix"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: talks to Redis or starts subprocesses")
    config.addinivalue_line("markers", "slow: fault injection with real processes (CI runs it)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def test_environment() -> Iterator[None]:
    """The test schedule and fee limit for every settings object and worker subprocess."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in TEST_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def redis_url(test_environment: None) -> Iterator[str]:
    from producer.devfarm import resolve_redis

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
    from tests.support.contracts import close_engine, engine_pair

    pair = engine_pair(tmp_path_factory.mktemp("cache"))
    yield pair
    for engine in pair.values():
        close_engine(engine)
