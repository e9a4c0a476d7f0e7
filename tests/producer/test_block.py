"""Block files (JSON lines): parsing, and the messages a bad block gets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from producer.block import BlockError, Tx, dump_block, load_block, parse_block

ROOT = Path(__file__).resolve().parents[2]


def line(**fields: object) -> str:
    base: dict[str, object] = {"tx_id": "t1", "contract": "token", "function": "transfer"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_a_good_block_parses_in_order_with_defaults() -> None:
    txs = parse_block([
        line(tx_id="a", input="0a00000000000000626f62", fee_limit=5000, caller="alice"),
        "",
        line(tx_id="b", input="0x00ff"),
        line(tx_id="c", input=...),
    ])
    assert [t.tx_id for t in txs] == ["a", "b", "c"]
    assert txs[0] == Tx("a", "token", "transfer", bytes.fromhex("0a00000000000000626f62"),
                        5000, "alice")
    assert txs[1].input == b"\x00\xff" and txs[1].fee_limit is None and txs[1].caller == ""
    job = txs[1].job(height=7, time_ms=99, default_fee_limit=1234)
    assert job.fee_limit == 1234 and job.context.block_height == 7
    assert job.context.block_time == 99
    assert parse_block(dump_block(txs).splitlines()) == txs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "line 1: not valid JSON"),
        ("[1, 2]", "line 1: expected a JSON object, got list"),
        (line(tx_id=...), "line 1: 'tx_id' must be a string, got missing"),
        (line(contract=""), "line 1: 'contract' must not be empty"),
        (line(function=3), "line 1: 'function' must be a string, got a int"),
        (line(input="zz"), "line 1: 'input' is not valid hex: 'zz'"),
        (line(input="abc"), "line 1: 'input' is not valid hex"),
        (line(input=12), "line 1: 'input' must be a hex string, got int"),
        (line(fee_limit="10"), "line 1: 'fee_limit' must be an integer, got \"10\""),
        (line(fee_limit=1.5), "line 1: 'fee_limit' must be an integer, got 1.5"),
        (line(fee_limit=0), "line 1: 'fee_limit' must be positive, got 0"),
        (line(fee_limit=True), "line 1: 'fee_limit' must be an integer, got true"),
        (line(fee_limit=10**12), "line 1: 'fee_limit' 1000000000000 is over the maximum 1000"),
        (line(caller=["x"]), "line 1: 'caller' must be a string, got a list"),
        (line(amount=5), "line 1: unknown field(s) 'amount'; known: tx_id, contract,"),
        (line(contract="x" * 65), "line 1: 'contract' is over 64 bytes"),
        ("", "no transactions (the file is empty)"),
    ],
)
def test_each_bad_line_gets_a_message_naming_line_and_field(text: str, message: str) -> None:
    with pytest.raises(BlockError) as info:
        parse_block(text.splitlines() or [""], "b.jsonl", max_fee_limit=1000)
    assert str(info.value).startswith("b.jsonl: ")
    assert message in str(info.value)


def test_every_problem_is_reported_at_once_and_duplicates_name_the_first_line() -> None:
    lines = [line(tx_id="a"), line(tx_id="b", input="q"), line(tx_id="a"), "7"]
    with pytest.raises(BlockError) as info:
        parse_block(lines, "blk")
    assert info.value.problems == [
        "line 2: 'input' is not valid hex: 'q'",
        "line 3: duplicate tx_id 'a' (first on line 1)",
        "line 4: expected a JSON object, got int",
    ]


def test_load_block_reports_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(BlockError, match="cannot read"):
        load_block(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe{}")
    with pytest.raises(BlockError, match="not UTF-8"):
        load_block(bad)


@pytest.mark.integration
def test_wesfarm_submit_rejects_a_bad_block_with_exit_2_and_the_line(tmp_path: Path) -> None:
    """Parsing happens before any job is enqueued (the Redis URL is never used)."""
    block = tmp_path / "block.jsonl"
    block.write_text(line(tx_id="ok") + "\n" + line(tx_id="x", fee_limit=-5) + "\n")
    env = {"WESFARM_REDIS_URL": "redis://127.0.0.1:1/0", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "producer.cli", "submit", str(block)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "line 2: 'fee_limit' must be positive, got -5" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("field", ["access", "writes"])
def test_a_block_line_may_carry_access_and_write_lists_of_hex_keys(field: str) -> None:
    from producer.block import parse_tx

    head = '{"tx_id": "t", "contract": "c", "function": "f", "' + field + '": '
    tx = parse_tx(head + '["6b", "0x00"]}')
    assert getattr(tx, field) == (b"k", b"\x00")
    assert getattr(tx.job(1, 2, 3), field) == (b"k", b"\x00")
    assert parse_tx(dump_block([tx]).strip()) == tx
    for bad, message in (('"6b"', "list of hex keys"), ('["zz"]', "not valid hex"),
                         ('["' + "00" * 257 + '"]', "at most 256")):
        with pytest.raises(ValueError, match=f"'{field}'.*{message}"):
            parse_tx(head + bad + "}")


def test_a_tx_id_may_not_look_like_a_batch_job_id() -> None:
    from producer.block import parse_tx

    with pytest.raises(ValueError, match="batch job ids"):
        parse_tx('{"tx_id": "batch:p:10000:x", "contract": "c", "function": "f"}')
