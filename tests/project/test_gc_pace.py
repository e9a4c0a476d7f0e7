"""The CLI (every wesfarm command, the worker's included) and every executor run with
config/gc_pace.py's collector thresholds, not Python's default."""

from __future__ import annotations

import gc
import signal
from collections.abc import Iterator
from multiprocessing import Pipe

import pytest

from config.gc_pace import THRESHOLDS


@pytest.fixture
def default_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


@pytest.mark.usefixtures("default_thresholds")
def test_the_cli_paces_the_collector(capsys: pytest.CaptureFixture[str]) -> None:
    from producer.cli import main

    assert main(["--version"]) == 0
    assert gc.get_threshold() == THRESHOLDS != (700, 10, 10)
    assert capsys.readouterr().out.strip()


@pytest.mark.usefixtures("default_thresholds")
def test_an_executor_paces_the_collector() -> None:
    from worker.executor_main import main

    ours, theirs = Pipe()
    ours.close()  # the worker is gone before the init request: the executor exits
    interrupt = signal.getsignal(signal.SIGINT)  # an executor ignores Ctrl-C
    try:
        assert main(theirs) == 1
    finally:
        signal.signal(signal.SIGINT, interrupt)
    assert gc.get_threshold() == THRESHOLDS
