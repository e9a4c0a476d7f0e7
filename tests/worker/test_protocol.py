"""The wire contract's codecs: state records (read by Python and by Lua), batch ids."""

from __future__ import annotations

import pytest
import redis

from worker.protocol import (
    STATE_LUA,
    BadStateRecord,
    batch_job_id,
    decode_state,
    encode_state,
    encode_version,
    state_write,
)


@pytest.mark.parametrize("value", [b"", b"\x00", b"v" * 70_000])
@pytest.mark.parametrize("version", [0, 1, 2**40 + 3, 2**53 - 1])
def test_a_state_record_round_trips(value: bytes, version: int) -> None:
    record = encode_state(value, version)
    assert record[:1] == b"\x01" and record[1:9] == encode_version(version)
    assert decode_state(record) == (value, version)


@pytest.mark.parametrize("record", [b"", b"\x01short", b"\x92\xc4\x01v\x01", b"\x02" + bytes(8)])
def test_what_is_not_a_state_record_is_refused(record: bytes) -> None:
    with pytest.raises(BadStateRecord):
        decode_state(record)


def test_lua_writes_and_reads_the_same_records(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"{key_prefix}:protocol-lua"
    script = client.register_script(STATE_LUA + """
apply_write(KEYS[1], 'a', ARGV[1], pack_version(tonumber(ARGV[2])))
apply_write(KEYS[1], 'gone', ARGV[3], pack_version(tonumber(ARGV[2])))
return {record_version(redis.call('HGET', KEYS[1], 'a')),
        record_version(redis.call('HGET', KEYS[1], 'absent'))}
""")
    try:
        client.hset(key, "gone", encode_state(b"x", 1))
        seen, absent = script(keys=[key], args=[state_write(b"val\x00ue"), 2**40 + 7,
                                                  state_write(None)])
        assert decode_state(client.hget(key, "a")) == (b"val\x00ue", 2**40 + 7)  # type: ignore[arg-type]
        assert seen == encode_version(2**40 + 7) and absent == encode_version(0)
        assert client.hget(key, "gone") is None
    finally:
        client.delete(key)
        client.close()


def test_a_batch_id_depends_on_every_tx_id_and_their_order() -> None:
    one = batch_job_id("p", ["a", "b"])
    assert one.startswith("batch:p:2:") and one == batch_job_id("p", ["a", "b"])
    assert one != batch_job_id("p", ["b", "a"]) and one != batch_job_id("q", ["a", "b"])
    assert batch_job_id("p", ["a\x00b"]) != batch_job_id("p", ["a", "b"])
