"""docker-compose.yml, Dockerfile and prometheus.yml, checked without a Docker engine:
the commands they run are real `wesfarm` entry points with valid options, and every
WESFARM_* variable they set is a real setting with a valid value.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from config import Settings, SettingsError, load_settings
from producer.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def parse_yaml(text: str) -> Any:
    return yaml.safe_load(text)


def parse_wesfarm(argv: list[str]) -> argparse.Namespace:
    assert argv and argv[0] == "wesfarm", f"not a wesfarm command: {argv}"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"`{shlex.join(argv)}` is not a valid wesfarm command line")


def check_settings_env(env: dict[str, Any]) -> None:
    """Each WESFARM_* name is a Settings field (nested with __) and the values validate."""
    overrides: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith("WESFARM_"):
            continue
        path = name[len("WESFARM_"):].lower().split("__")
        assert path[0] in Settings.model_fields, f"{name}: no setting {path[0]!r}"
        if len(path) == 2:
            group = Settings.model_fields[path[0]].annotation
            assert group is not None and path[1] in group.model_fields, f"{name}: unknown"
        else:
            assert len(path) == 1, f"{name}: too deeply nested"
            overrides[path[0]] = value
    try:
        load_settings(**overrides)
    except SettingsError as exc:
        pytest.fail(f"compose environment is not valid settings: {exc}")


# -- the files ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = parse_yaml((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _substituted(value: str) -> str:
    """A compose value with `${VAR:?message}` / `${VAR}` replaced as compose would."""
    return re.sub(r"\$\{(\w+)(:\?[^}]*)?\}", lambda m: f"<{m[1]}>", value)


def test_redis_keeps_an_append_only_file_behind_a_password_on_the_network_only(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert {"redis", "worker", "tools", "prometheus"} <= set(services)
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server" and "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"
    # a password with no default: compose refuses to start without one
    assert command[command.index("--requirepass") + 1].startswith(
        "${WESFARM_REDIS_PASSWORD:?")
    assert "ports" not in redis  # reachable only on the compose network
    assert redis["environment"]["REDISCLI_AUTH"].startswith("${WESFARM_REDIS_PASSWORD:?")


def test_worker_runs_a_real_wesfarm_command_and_scales(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    args = parse_wesfarm(worker["command"])
    assert args.command == "worker" and args.handler.__module__ == "worker.command"
    assert args.metrics_port == 9464
    # `docker compose up --scale worker=4`: no fixed name, no host port to collide on
    assert "container_name" not in worker
    assert "ports" not in worker
    assert str(args.metrics_port) in [str(p) for p in worker.get("expose", [])]
    assert "build" in worker
    env = {k: _substituted(v) for k, v in worker["environment"].items()}
    assert env["WESFARM_REDIS_URL"] == "redis://:<WESFARM_REDIS_PASSWORD>@redis:6379/0"
    assert "WESFARM_EXECUTORS" not in env and float(worker["cpus"]) >= 1  # from the quota
    check_settings_env(env)
    # its health is its metrics endpoint answering
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{args.metrics_port}/metrics" in probe


def test_workers_and_tools_share_one_artifact_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    cache = services["worker"]["environment"]["WESFARM_CACHE_DIR"]
    for name in ("worker", "tools"):
        assert f"artifacts:{cache}" in services[name]["volumes"], name
        assert services[name]["environment"]["WESFARM_CACHE_DIR"] == cache
    assert "artifacts" in compose["volumes"]
    assert services["tools"]["profiles"] == ["tools"]  # not started by `up`
    parse_wesfarm(services["tools"]["command"])


def test_the_walkthrough_in_the_comments_runs_real_commands_on_real_files() -> None:
    from producer.block import load_block

    text = (ROOT / "docker-compose.yml").read_text()
    joined = re.sub(r"\\\n#\s+", " ", text)
    commands = re.findall(r"docker compose run --rm tools (wesfarm [^#\n]*)", joined)
    assert len(commands) >= 3
    for line in commands:
        argv = shlex.split(line)
        parse_wesfarm(argv)
        for arg in argv:
            if arg.startswith("examples/"):
                assert (ROOT / arg).is_file(), arg
    txs = load_block(ROOT / "examples" / "blocks" / "token.jsonl", 10**9)
    assert len(txs) == 16 and {t.contract for t in txs} == {"token"}


def test_dockerfile_builds_the_package_in_place_with_the_examples(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^\s+(&& )?pip install -e \. ", text, re.M)  # in the RUN that has gcc
    assert re.search(r"^COPY examples \./examples$", text, re.M)  # demo and bench need them
    [cmd] = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert json.loads(cmd) == compose["services"]["worker"]["command"]
    parse_wesfarm(json.loads(cmd))
    envs = dict(re.findall(r"^ENV (WESFARM_[A-Z_]+)=(\S+)$", text, re.M))
    check_settings_env(envs)
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'wesfarm = "producer.cli:main"' in scripts  # the `wesfarm` the image calls
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "**/node_modules" in ignored and ".venv" in ignored


def test_prometheus_listens_on_loopback_only(compose: dict[str, Any]) -> None:
    assert compose["services"]["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]


def test_prometheus_scrapes_every_worker_replica(compose: dict[str, Any]) -> None:
    prom = compose["services"]["prometheus"]
    mounts = [v.split(":")[0] for v in prom["volumes"]]
    local = [m for m in mounts if m.startswith("./")]
    assert local and all((ROOT / m).is_file() for m in local)
    config = parse_yaml((ROOT / local[0]).read_text())
    [job] = config["scrape_configs"]
    port = parse_wesfarm(compose["services"]["worker"]["command"]).metrics_port
    targets = []
    for sd in job.get("dns_sd_configs", []):
        targets += [(name, sd["port"]) for name in sd["names"]]
    for static in job.get("static_configs", []):
        targets += [tuple(t.split(":")) for t in static["targets"]]
    assert ("worker", port) in [(n, int(p)) for n, p in targets]
