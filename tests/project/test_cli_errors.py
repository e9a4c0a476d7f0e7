"""Every CLI error path a new user hits ends in one line naming the problem, a documented
exit code (producer/exits.py) and no traceback; arguments are checked before anything
connects; settings mistakes are named; secrets are masked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from producer.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from tests.support import CONTRACTS, ROOT
from tests.support.farm import free_port

pytestmark = pytest.mark.integration  # subprocesses

COUNTER = CONTRACTS / "counter" / "counter.wasm"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def wesfarm(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producer.cli", *args], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def one_line(proc: subprocess.CompletedProcess[str], code: int, *pieces: str) -> str:
    """The process ended with `code` and one error line holding every piece, no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith(
        "wesfarm: warning:")]
    assert len(errors) == 1, proc.stderr
    for piece in pieces:
        assert piece in errors[0], (piece, errors[0])
    return errors[0]


def test_a_wat_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wat"
    bad.write_text("(module\n  (func $f\n")
    one_line(wesfarm("run", str(bad), "f"), EXIT_USAGE, "bad.wat", "not valid WAT",
             "line 3, column 1")
    one_line(wesfarm("deploy", str(bad), "--address", "x", env={"WESFARM_REDIS_URL":
                                                               DEAD_REDIS}),
             EXIT_USAGE, "line 3, column 1")  # the file is checked before Redis


def test_a_broken_state_file_is_named_and_an_unwritable_one_keeps_the_result(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "state.json"
    broken.write_text("{not json")
    one_line(wesfarm("run", str(COUNTER), "incr", "--state", str(broken)), EXIT_USAGE,
             "--state", "not a wesfarm state file")
    nowhere = tmp_path / "missing-dir" / "state.json"
    proc = wesfarm("run", str(COUNTER), "incr", "--state", str(nowhere), "--json")
    one_line(proc, EXIT_FAILED, "--state", "not written")
    assert json.loads(proc.stdout)["status"] == "ok"  # the Result came first


def test_bad_arguments_are_refused_before_connecting() -> None:
    env = {"WESFARM_REDIS_URL": DEAD_REDIS}
    one_line(wesfarm("call", "token", "mint", "--fee-limit", str(10**20), env=env), EXIT_USAGE,
             "--fee-limit", "limits.max_fee_limit")
    one_line(wesfarm("call", "token", "mint", "--input-hex", "zz", env=env), EXIT_USAGE,
             "--input-hex")
    one_line(wesfarm("call", "token", "mint", env=env), EXIT_FAILED,
             "cannot reach Redis at redis://127.0.0.1:1/0")
    one_line(wesfarm("run", str(COUNTER)), EXIT_USAGE, "wesfarm run FILE FUNCTION")


def test_settings_mistakes_are_named(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("[limits\nmax_memory_pages = 1\n")
    one_line(wesfarm("config", env={"WESFARM_CONFIG_FILE": str(toml)}), EXIT_USAGE,
             "not valid TOML", "line 1")
    toml.write_text("[limits]\nmax_memory_page = 1\n")
    one_line(wesfarm("config", env={"WESFARM_CONFIG_FILE": str(toml)}), EXIT_USAGE,
             "limits.max_memory_page: not a setting", "did you mean max_memory_pages?",
             "max_events")
    one_line(wesfarm("state", "token", "00", env={"WESFARM_REDIS_URL": "localhost:6379"}),
             EXIT_USAGE, "redis_url", "no scheme", "redis://localhost:6379")
    proc = wesfarm("config", env={"WESFARM_EXECUTERS": "3"})
    assert proc.returncode == EXIT_OK
    assert "WESFARM_EXECUTERS is not a wesfarm setting" in proc.stderr


def test_config_masks_secrets() -> None:
    proc = wesfarm("config", env={"WESFARM_REDIS_URL": "redis://:hunter2@db:6379/0",
                                  "WESFARM_CACHE_SECRET": "s3cret"})
    assert proc.returncode == EXIT_OK, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["redis_url"] == "redis://:***@db:6379/0" and shown["cache_secret"] == "***"
    assert "hunter2" not in proc.stdout and "s3cret" not in proc.stdout


def test_unreachable_redis_for_demo_and_worker_is_one_line_at_once() -> None:
    env = {"WESFARM_REDIS_URL": DEAD_REDIS}
    one_line(wesfarm("demo", env=env), EXIT_FAILED, "cannot reach Redis", "--embedded-redis")
    one_line(wesfarm("worker", env=env), EXIT_FAILED, "cannot reach Redis at " + DEAD_REDIS)


def test_a_busy_metrics_port_is_named(redis_url: str, key_prefix: str) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = wesfarm("worker", "--executors", "1", "--metrics-port", str(port),
                       env={"WESFARM_REDIS_URL": redis_url, "WESFARM_METRICS_HOST": "127.0.0.1",
                            "WESFARM_KEY_PREFIX": f"{key_prefix}-metrics"})
    one_line(proc, EXIT_FAILED, f"127.0.0.1:{port}", "--metrics-port")


def test_version_and_debug() -> None:
    proc = wesfarm("--version")
    assert proc.returncode == EXIT_OK and proc.stdout.startswith("wesfarm 0.")
    assert "wasmtime 50.0.1" in proc.stdout and "fee schedule wes-fee-" in proc.stdout
    plain = wesfarm("call", "t", "f", env={"WESFARM_REDIS_URL": "localhost:1"})
    one_line(plain, EXIT_USAGE, "no scheme")
    shown = wesfarm("--debug", "call", "t", "f", env={"WESFARM_REDIS_URL": "localhost:1"})
    assert "Traceback" in shown.stderr and "no scheme" in shown.stderr  # where it came from


def test_ctrl_c_during_run_is_interrupted_not_a_traceback(tmp_path: Path) -> None:
    spin = tmp_path / "spin.wat"
    spin.write_text('(module (memory (export "memory") 1) (func (export "spin") '
                    "(loop $l (br $l))))")
    proc = subprocess.Popen([sys.executable, "-m", "producer.cli", "run", str(spin), "spin",
                             "--fee-limit", str(10**12), "--timeout-ms", "30000"],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # imports done, the loop spinning
    proc.send_signal(signal.SIGINT)
    out, errors = proc.communicate(timeout=60)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, errors)
    one_line(done, EXIT_INTERRUPTED, "interrupted")
    assert out == ""  # no Result: the run did not finish


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from producer.cli import COMMANDS, build_parser

    missing = []
    for name in COMMANDS:
        [sub] = [a for a in build_parser(name)._actions
                 if isinstance(a, argparse._SubParsersAction)]
        for action in sub.choices[name]._actions:
            if action.help is None and not isinstance(action, argparse._HelpAction):
                missing.append(f"{name} {action.option_strings or action.dest}")
            if "--json" in action.option_strings:  # a flag everywhere (files: --output)
                assert action.nargs == 0, name
    assert missing == []
