"""Fixtures of the fault-injection suite: a private redis-server (AOF on) per test and a
farm on it whose every process is stopped at the end, even when the test fails."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from producer.client import FarmClient
from tests.faults.support import FaultFarm, redis_and_farm


@pytest.fixture()
def farm(tmp_path: Path) -> Iterator[FaultFarm]:
    with redis_and_farm(tmp_path) as farm:
        yield farm


@pytest.fixture()
async def client(farm: FaultFarm) -> AsyncIterator[FarmClient]:
    async with FarmClient(farm.settings()) as client:
        yield client
