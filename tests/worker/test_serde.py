"""The arq job (de)serializers: msgpack only, and undecodable payloads become rejections."""

from __future__ import annotations

import pickle

import msgpack
import pytest

from worker.protocol import FN_REJECT, MAX_ARG_DEPTH, job_deserializer, job_serializer


def test_round_trip_keeps_bytes_as_bytes() -> None:
    job = {"t": 1, "f": "execute", "a": [{"tx_id": "t", "input": b"\x00\xff"}], "k": {}, "et": 5}
    data = job_serializer(job)
    assert msgpack.unpackb(data, raw=False) == job  # plain msgpack on the wire
    assert job_deserializer(data) == job


def test_results_with_exceptions_still_serialize() -> None:
    data = job_serializer({"r": ValueError("boom"), "s": False})
    assert msgpack.unpackb(data, raw=False)["r"] == {"exception": "ValueError", "message": "boom"}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1\xc1\xc1", "not valid msgpack"),
        (pickle.dumps({"t": 1, "f": "execute", "a": [], "k": {}, "et": 0}), "not valid msgpack"),
        (msgpack.packb([1, 2, 3]), "must be a map"),
        (msgpack.packb({"f": "execute"}), "lacks arq fields"),
        (msgpack.packb({"t": 1, "f": 3, "a": [], "k": {}, "et": 0}), "mistyped"),
        (msgpack.packb({"t": 1, "f": "execute", "a": 7, "k": {}, "et": 0}), "not a list"),
        (msgpack.packb({"t": "x", "f": "execute", "a": [], "k": {}, "et": 0}), "mistyped"),
        # what used to kill a worker or end without a Result
        (msgpack.packb({"t": 6, "f": "execute", "a": [], "k": {}, "et": 0}), "try count 6"),
        (msgpack.packb({"t": 1, "f": "execute", "a": [], "k": {}, "et": 2**62}),
         "enqueue time"),
        (msgpack.packb({"t": 1, "f": "launch", "a": [], "k": {}, "et": 0}), "no function"),
        (msgpack.packb({"t": 1, "f": "execute", "a": [], "k": {1: 2}, "et": 0}), "keyword"),
        (msgpack.packb({"t": 1, "f": "execute", "a": [], "k": {"ctx": 1}, "et": 0}), "keyword"),
        (msgpack.packb({"t": 1, "f": "execute_batch", "a": [[]], "k": {"x": 1}, "et": 0}),
         "keyword"),
    ],
)
def test_undecodable_payload_becomes_a_reject_call(payload: bytes, reason: str) -> None:
    job = job_deserializer(payload)
    assert job["f"] == FN_REJECT and job["k"] == {}
    assert reason in job["a"][0]


def test_a_job_enqueued_the_plain_arq_way_is_accepted() -> None:
    """arq's enqueue_job writes no try count (t=None) until a worker picks the job up."""
    from arq.jobs import serialize_job

    from worker.protocol import FN_EXECUTE

    data = serialize_job(FN_EXECUTE, ({"tx_id": "t"},), {}, None, 1, serializer=job_serializer)
    decoded = job_deserializer(data)
    assert decoded["f"] == FN_EXECUTE and decoded["t"] is None


def test_arguments_nested_a_thousand_deep_are_refused_without_recursion() -> None:
    nested: list[object] = []
    for _ in range(1_000):
        nested = [nested]
    data = msgpack.packb({"t": 1, "f": "execute", "a": [nested], "k": {}, "et": 0})
    job = job_deserializer(data)
    assert job["f"] == FN_REJECT and "nest deeper" in job["a"][0]


def test_a_real_batch_is_not_too_deep() -> None:
    batch = [[{"tx_id": "t", "context": {"caller": "a"}, "input": b""}]]
    data = job_serializer({"t": 1, "f": "execute_batch", "a": batch, "k": {}, "et": 1})
    assert job_deserializer(data)["f"] == "execute_batch"


def test_a_farm_job_refused_for_its_envelope_names_its_tx_ids() -> None:
    """So that its txs still end (`invalid`), not wait forever."""
    maps = [{"tx_id": "a"}, {"tx_id": ""}, "junk", {"tx_id": "b"}]
    for bad in ({"t": 6}, {"k": {"x": 1}}, {"et": -1}):
        data = msgpack.packb({"t": 1, "f": "execute_batch", "a": [maps], "k": {}, "et": 0, **bad})
        job = job_deserializer(data)
        assert job["f"] == FN_REJECT and job["k"] == {"tx_ids": ["a", "b"]}
    # A payload cannot name them itself: its own keyword arguments are refused.
    forged = {"t": 1, "f": FN_REJECT, "a": ["x"], "k": {"tx_ids": ["victim"]}, "et": 0}
    assert job_deserializer(msgpack.packb(forged))["k"] == {}


def test_arqs_record_of_a_job_delivered_many_times_is_readable() -> None:
    """The record arq writes when a job runs out of tries names its txs (they get Results
    from it); the job deserializer would refuse it for its try count."""
    from arq.jobs import serialize_result
    from arq.worker import JobExecutionFailed

    from worker.protocol import result_record

    data = serialize_result("execute_batch", ([{"tx_id": "a"}],), {}, 9, 1, False,
                            JobExecutionFailed("max 8 retries exceeded"), 1, 2, "ref", "q",
                            job_id="j", serializer=job_serializer)
    record = result_record(data)
    assert record["t"] == 9 and record["a"] == [[{"tx_id": "a"}]]
    assert record["r"]["message"] == "max 8 retries exceeded"
    assert job_deserializer(data)["f"] == FN_REJECT
    assert result_record(b"\xc1") == {} and result_record(msgpack.packb([1])) == {}


@pytest.mark.parametrize("depth", [1, 2, MAX_ARG_DEPTH - 1, MAX_ARG_DEPTH, MAX_ARG_DEPTH + 1])
def test_nesting_is_refused_exactly_past_the_limit(depth: int) -> None:
    """The arguments list counts, lists and maps alike count, scalars beside them do not."""
    nested: object = [b"leaf", 7]
    for level in range(depth - 2):
        nested = {"m": nested, "n": 5} if level % 2 else [nested, b"x"]
    args = [nested] if depth >= 2 else []
    job = job_deserializer(msgpack.packb({"t": 1, "f": "execute", "a": args, "k": {}, "et": 0}))
    refused = job["f"] == FN_REJECT and "nest deeper" in str(job["a"])
    assert refused == (depth > MAX_ARG_DEPTH)


def test_arqs_record_of_a_job_keeps_its_arguments_only_if_it_failed() -> None:
    """A failed job's record is where its tx ids are found again (worker/jobs.py); a job
    that succeeded wrote its own Results and its record needs no copy of the batch."""
    from arq.jobs import serialize_result

    batch = ([{"tx_id": "t1"}, {"tx_id": "t2"}],)
    for success, kept in ((True, []), (False, [[{"tx_id": "t1"}, {"tx_id": "t2"}]])):
        data = serialize_result("execute_batch", batch, {}, 1, 1, success, None, 2, 3, "r",
                                "q", "batch:p:2:x", serializer=job_serializer)
        assert data is not None
        assert msgpack.unpackb(data, raw=False)["a"] == kept


def test_a_batchs_arguments_have_a_short_repr_and_stay_a_list() -> None:
    maps = [{"tx_id": f"t{i}", "input": b"x" * 100} for i in range(256)]
    job = job_deserializer(job_serializer({"t": 1, "f": "execute_batch", "a": [maps], "k": {},
                                           "et": 1}))
    assert job["a"][0] == maps and isinstance(job["a"][0], list)
    assert repr(job["a"]) == "[<256 txs>]"


def test_a_batch_of_more_txs_than_a_job_may_hold_is_refused_naming_as_many() -> None:
    """A hostile batch of 200,000 tiny maps held a worker's event loop for seconds; more
    than MAX_JOB_TXS is refused at decoding, its first MAX_JOB_TXS tx ids ended."""
    from worker.protocol import MAX_JOB_TXS

    maps = [{"tx_id": f"t{i}"} for i in range(MAX_JOB_TXS + 5)]
    data = msgpack.packb({"t": 1, "f": "execute_batch", "a": [maps], "k": {}, "et": 0})
    job = job_deserializer(data)
    assert job["f"] == FN_REJECT and f"more than {MAX_JOB_TXS}" in job["a"][0]
    assert job["k"]["tx_ids"] == [f"t{i}" for i in range(MAX_JOB_TXS)]
    full = msgpack.packb({"t": 1, "f": "execute_batch", "a": [maps[:MAX_JOB_TXS]], "k": {},
                          "et": 0})
    assert job_deserializer(full)["f"] == "execute_batch"
