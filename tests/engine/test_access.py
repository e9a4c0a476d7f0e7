"""Access and write lists (Job.access, Job.writes): hints that never change a result,
validated like every other field of a job."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from config import Settings
from engine.model import MAX_ACCESS_KEY_BYTES, MAX_ACCESS_KEYS, Job
from tests.support.contracts import Chain, example, u64


@pytest.fixture()
def chain(settings: Settings) -> Iterator[Chain]:
    c = Chain.start(settings)
    c.deploy("token", example("token"))
    c.state.apply("token", {b"bal:alice": u64(100), b"supply": u64(100)})
    yield c
    c.close()


def test_the_same_result_with_or_without_an_access_list(chain: Chain) -> None:
    job = chain.job("token", "transfer", u64(7) + b"bob")
    plain = chain.engine.execute(job, chain.state, chain.codes)
    listed = chain.engine.execute(replace(job, access=(b"bal:alice", b"bal:bob", b"x"),
                                          writes=(b"bal:bob", b"y")),
                                  chain.state, chain.codes)
    assert plain.status == "ok"
    assert listed.consensus_bytes() == plain.consensus_bytes()


@pytest.mark.parametrize("field", ["access", "writes"])
@pytest.mark.parametrize(("keys", "message"), [
    ("bal:alice", "{} must be a list"),
    ([b"k"] * (MAX_ACCESS_KEYS + 1), f"limit {MAX_ACCESS_KEYS}"),
    ([b"k", "text"], "{} keys must be bytes"),
    ([b"k" * (MAX_ACCESS_KEY_BYTES + 1)], f"at most {MAX_ACCESS_KEY_BYTES}"),
])
def test_a_bad_access_list_ends_the_job_invalid_naming_it(chain: Chain, field: str,
                                                           keys: object, message: str) -> None:
    wire = chain.job("token", "transfer", u64(7) + b"bob").to_wire()
    result = chain.engine.execute_wire({**wire, field: keys}, chain.state, chain.codes)
    assert result.status == "invalid" and result.fee.used == 0
    assert message.format(field) in (result.error or {})["message"]


def test_an_access_list_round_trips_on_the_wire(settings: Settings) -> None:
    job = Job("t", "token", "transfer", access=(b"bal:a", b""), writes=(b"bal:b",))
    limits = settings.limits
    back = Job.from_wire(job.to_wire(), limits.max_input_bytes, limits.max_fee_limit,
                         limits.max_timeout_ms)
    assert back == job
    bare = replace(job, access=(), writes=()).to_wire()  # unchanged bytes without them
    assert "access" not in bare and "writes" not in bare


def test_an_in_process_job_with_a_bad_access_list_gets_the_farms_verdict(chain: Chain) -> None:
    job = chain.job("token", "transfer", u64(7) + b"bob")
    for bad in ({"access": (b"k",) * (MAX_ACCESS_KEYS + 1)},
                {"writes": (b"k",) * (MAX_ACCESS_KEYS + 1)}):
        result = chain.engine.execute(replace(job, **bad), chain.state, chain.codes)  # type: ignore[arg-type]
        assert result.status == "invalid" and result.fee.used == 0
