"""Fixtures of the commit tests that call producer.commit directly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from producer.local_engine import LocalEngine
from tests.producer.test_commit import settings_for


@pytest.fixture()
def local(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[LocalEngine]:
    """An in-process engine, as the commit child holds one."""
    engine = LocalEngine(settings_for(redis_url, key_prefix, tmp_path))
    yield engine
    engine.close()
