"""Access and write lists (Job.access, Job.writes): validated like every other field of a
job. The write list is a hint that never changes a result; each declared key is read, and
paid for, before the contract runs, so a list of the keys a tx reads changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from config import Settings, load_settings
from engine.model import MAX_ACCESS_KEY_BYTES, MAX_ACCESS_KEYS, Job
from tests.support import TEST_FEES
from tests.support.contracts import Chain, example, u64

KEY_PRICE = 7_000  # storage_read_key (the test schedule's is 0)


@pytest.fixture()
def chain(settings: Settings) -> Iterator[Chain]:
    c = Chain.start(_priced(settings))
    c.deploy("token", example("token"))
    c.state.apply("token", {b"bal:alice": u64(100), b"supply": u64(100)})
    yield c
    c.close()


def test_a_list_of_the_keys_a_tx_reads_changes_nothing(chain: Chain) -> None:
    job = chain.job("token", "transfer", u64(7) + b"bob", fee_limit=100_000_000)
    plain = chain.engine.execute(job, chain.state, chain.codes)
    listed = chain.engine.execute(replace(job, access=(b"bal:alice", b"bal:bob"),
                                          writes=(b"bal:bob", b"y")),
                                  chain.state, chain.codes)
    assert plain.status == "ok"
    assert listed.consensus_bytes() == plain.consensus_bytes()


def _priced(settings: Settings) -> Settings:
    return load_settings(cache_dir=settings.cache_dir,
                         fees={**TEST_FEES, "storage_read_key": KEY_PRICE})


@pytest.mark.parametrize("raw_calls", [True, False], ids=["c-host", "reference"])
def test_a_declared_key_the_contract_never_reads_is_paid_for_as_a_read(
        settings: Settings, raw_calls: bool) -> None:
    # The farm fetches every declared key; unpaid, 64 large values a tx would be free work.
    c = Chain.start(_priced(settings), raw_calls=raw_calls)
    try:
        c.deploy("token", example("token"))
        c.state.apply("token", {b"bal:alice": u64(100), b"big": b"v" * 60_000})
        job = c.job("token", "transfer", u64(7) + b"bob", fee_limit=100_000_000)
        plain = c.engine.execute(job, c.state, c.codes)
        listed = c.engine.execute(
            replace(job, access=(b"bal:alice", b"big", b"absent", b"big")), c.state, c.codes)
        assert listed.status == plain.status == "ok"
        assert listed.fee.used - plain.fee.used == 2 * KEY_PRICE  # each unread key once
        assert listed.read_set == {**plain.read_set, b"big": 1, b"absent": 0}
        assert listed.write_set == plain.write_set
    finally:
        c.close()


def test_declared_keys_a_tx_cannot_pay_for_end_it_out_of_fee(chain: Chain) -> None:
    plain = chain.engine.execute(chain.job("token", "transfer", u64(7) + b"bob",
                                           fee_limit=100_000_000), chain.state, chain.codes)
    limit = plain.fee.used + 3 * KEY_PRICE  # not 64 more keys
    job = chain.job("token", "transfer", u64(7) + b"bob", fee_limit=limit)
    keys = tuple(b"k%d" % i for i in range(MAX_ACCESS_KEYS))
    result = chain.engine.execute(replace(job, access=keys), chain.state, chain.codes)
    assert result.status == "out_of_fee"
    assert result.fee.used == result.fee.limit and result.write_set == {}


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


def test_a_jobs_digest_names_its_access_list(chain: Chain) -> None:
    """The list changes what a tx pays and reads, so a Result of the same tx id with
    another list is another job's (producer/errors.py refuse_reused)."""
    from producer.errors import TxIdReused, refuse_reused

    job = chain.job("token", "transfer", u64(7) + b"bob", fee_limit=100_000_000)
    listed = replace(job, access=(b"bal:alice", b"x"))
    assert job.digest() != listed.digest() != replace(listed, access=(b"x", b"bal:alice")).digest()
    assert replace(job, writes=(b"y",)).digest() == job.digest()  # a hint only
    result = chain.engine.execute(job, chain.state, chain.codes)
    with pytest.raises(TxIdReused):
        refuse_reused([listed], {job.tx_id: result})
