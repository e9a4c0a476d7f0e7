"""SyncFarmClient: FarmClient for synchronous code, on its own event loop in its own thread.

The loop lives in a daemon thread, so the wrapper also works when the caller is
already inside a running event loop (a notebook, a sync callback of an async app).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from config import Settings
from engine.model import Job, Mode, Result
from producer.client import Deployment, FarmClient, FeeEntry, ProgressCallback

if TYPE_CHECKING:
    from producer.commit_record import CommitReport

T = TypeVar("T")


class SyncFarmClient:
    """Blocking twin of FarmClient: same methods, same arguments, plain return values."""

    def __init__(self, settings: Settings | None = None, redis_url: str | None = None) -> None:
        self.farm = FarmClient(settings, redis_url)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wesfarm-sync-client", daemon=True
        )
        self._thread.start()
        try:
            self._run(self.farm.connect())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            raise RuntimeError("SyncFarmClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.farm.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> SyncFarmClient:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def settings(self) -> Settings:
        return self.farm.settings

    def deploy(
        self, code: bytes, address: str, precompile: bool = False, deployer: str = ""
    ) -> Deployment:
        return self._run(self.farm.deploy(code, address, precompile, deployer))

    def code_hash(self, address: str) -> str | None:
        return self._run(self.farm.code_hash(address))

    def call(
        self,
        address: str,
        function: str,
        input: bytes = b"",
        fee_limit: int | None = None,
        mode: Mode = "call",
        caller: str = "",
        tx_id: str | None = None,
        block_height: int = 0,
        block_time: int = 0,
        timeout: float | None = None,
    ) -> Result:
        return self._run(self.farm.call(
            address, function, input, fee_limit=fee_limit, mode=mode, caller=caller,
            tx_id=tx_id, block_height=block_height, block_time=block_time, timeout=timeout,
        ))

    def submit_batch(
        self, jobs: Sequence[Job], batch_size: int | None = None, skip_done: bool = False
    ) -> list[str]:
        return self._run(self.farm.submit_batch(jobs, batch_size, skip_done))

    def results(self, tx_ids: Sequence[str]) -> dict[str, Result | None]:
        return self._run(self.farm.results(tx_ids))

    def wait(
        self,
        tx_ids: Sequence[str],
        timeout: float | None = None,
        progress_cb: ProgressCallback | None = None,
        seen: dict[str, float] | None = None,
    ) -> dict[str, Result]:
        # progress_cb runs on the client's loop thread.
        return self._run(self.farm.wait(tx_ids, timeout, progress_cb, seen))

    def fee_reports(
        self,
        tx_ids: Iterable[str] | None = None,
        start: str = "-",
        end: str = "+",
        count: int | None = None,
    ) -> list[FeeEntry]:
        return self._run(self.farm.fee_reports(tx_ids, start, end, count))

    def state(self, address: str, key: bytes) -> tuple[bytes, int] | None:
        return self._run(self.farm.state(address, key))

    def commit_block(
        self, jobs: Sequence[Job], results: Mapping[str, Result], height: int
    ) -> CommitReport:
        return self._run(self.farm.commit_block(jobs, results, height))
