"""What the commit child and its parent hand each other: Job rows and the committed
Results kept packed until asked for."""

from __future__ import annotations

import pytest

from engine.model import Context, FeeReport, Job, Result, pack, unpack
from producer.commit_record import CommittedResults


def test_a_job_row_packed_and_back_is_the_same_job() -> None:
    job = Job("t1", "token", "transfer", b"\x01\x02", 5_000, Context("alice", 7, 9),
              "view", 250, (b"bal:alice", b"bal:bob"), (b"bal:bob",))
    assert Job.from_row(unpack(pack(job.to_row()))) == job
    plain = Job("t2", "c", "f")
    assert Job.from_row(unpack(pack(plain.to_row()))) == plain


def _result(tx_id: str, status: str) -> Result:
    return Result(tx_id, status, FeeReport(100, 7, {"base": 7}, "s"), b"r",
                  write_set={b"k": b"v"})


def test_committed_results_decode_the_packed_ones_and_keep_block_order() -> None:
    fresh, farm = _result("b", "reverted"), _result("a", "ok")
    results = CommittedResults(["b", "a"], {"b": pack(fresh.to_wire())}, {"a": farm, "z": farm})
    assert list(results) == ["b", "a"] and len(results) == 2
    assert results["b"] == fresh and results["b"] is results["b"]  # decoded once
    assert results["a"] is farm
    assert "z" not in results
    with pytest.raises(KeyError):
        results["z"]
