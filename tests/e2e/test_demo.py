"""`wesfarm demo` end to end, as a user runs it: a subprocess, nothing configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytestmark = pytest.mark.integration  # subprocesses

ROOT = Path(__file__).resolve().parents[2]


def run_demo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", "demo", "--txs", "300", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WESFARM_")}
    env["WESFARM_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(ROOT)
    return env


def check_output(proc: subprocess.CompletedProcess[str]) -> None:
    out, shown = proc.stdout, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, shown
    assert "demo OK" in out, shown
    assert "300/300 txs" in out and "tx/s" in out, shown
    for status in ("ok", "reverted", "out_of_fee"):
        assert f"  {status} " in out, shown
    assert "committed block 2: " in out, shown
    assert "== sum of balances" in out, shown
    assert "/300" in proc.stderr, shown  # the progress bar
    assert "Traceback" not in proc.stderr, shown


def test_demo_with_nothing_configured(tmp_path: Path) -> None:
    """Uses localhost:6379 if it answers (fresh prefix, keys deleted after), else embedded."""
    check_output(run_demo(env=clean_env(tmp_path)))


def test_demo_on_a_configured_redis_leaves_no_keys_behind(
    tmp_path: Path, redis_url: str
) -> None:
    env = clean_env(tmp_path)
    env["WESFARM_REDIS_URL"] = redis_url
    proc = run_demo(env=env)
    check_output(proc)
    assert "(shared Redis)" in proc.stdout
    prefix = proc.stdout.split("key prefix '", 1)[1].split("'", 1)[0]
    assert prefix.startswith("wesfarm-demo-")
    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match=f"{prefix}*"))
        assert not list(client.scan_iter(match=f"arq:*{prefix}*"))
    finally:
        client.close()


@pytest.mark.skipif(sys.platform != "linux", reason="embedded redis-server: linux wheel")
def test_demo_with_a_private_embedded_redis(tmp_path: Path) -> None:
    proc = run_demo("--embedded-redis", "--workers", "2", env=clean_env(tmp_path))
    check_output(proc)
    assert "(embedded redis-server)" in proc.stdout
