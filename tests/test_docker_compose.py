"""docker-compose.yml, Dockerfile and prometheus.yml, checked without a Docker engine:
the commands they run are real `wesfarm` entry points with valid options, and every
WESFARM_* variable they set is a real setting with a valid value.

PyYAML is not a dependency: a small parser for the block-style subset these files use
(mappings, lists, JSON flow lists, scalars, comments) reads them; when PyYAML happens
to be installed, the two parsers must agree.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from config import Settings, SettingsError, load_settings
from producer.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r'^("[^"]*"|[A-Za-z0-9_.\-]+):(?:\s+|$)')

# -- a minimal YAML reader -------------------------------------------------------------------


def _lines(text: str) -> list[tuple[int, str]]:
    out = []
    for raw in text.splitlines():
        body = re.sub(r'(^|\s)#(?=(?:[^"]*"[^"]*")*[^"]*$).*', "", raw).rstrip()
        if body.strip():
            out.append((len(body) - len(body.lstrip(" ")), body.strip()))
    return out


def _scalar(text: str) -> Any:
    if text[:1] in ('"', "["):
        return json.loads(text)
    if text[:1] == "'":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return {"true": True, "false": False, "null": None, "~": None}.get(text, text)


def _block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- ") or lines[i][1] == "-":
        out: list[Any] = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("-"):
            item = lines[i][1][1:].strip()
            if KEY.match(item):  # "- key: value ..." starts a mapping two columns in
                lines[i] = (indent + 2, item)
                value, i = _block(lines, i, indent + 2)
            else:
                value, i = _scalar(item), i + 1
            out.append(value)
        return out, i
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        match = KEY.match(lines[i][1])
        assert match, f"unsupported YAML line: {lines[i][1]!r}"
        key, rest = _scalar(match.group(1)), lines[i][1][match.end():].strip()
        i += 1
        if rest:
            mapping[key] = _scalar(rest)
        elif i < len(lines) and (lines[i][0] > indent or lines[i][1].startswith("-")):
            mapping[key], i = _block(lines, i, lines[i][0])
        else:
            mapping[key] = None
    return mapping, i


def parse_yaml(text: str) -> Any:
    lines = _lines(text)
    value, end = _block(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed YAML from line {lines[end]}"
    if (yaml := _optional_yaml()) is not None:
        assert value == yaml.safe_load(text)
    return value


def _optional_yaml() -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError:
        return None


# -- the wesfarm CLI, as argparse sees it ------------------------------------------------------


def wesfarm_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wesfarm")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in dict.fromkeys(COMMANDS.values()):
        try:
            importlib.import_module(f"producer.commands.{module}").register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != f"producer.commands.{module}":
                raise
    return parser


def parse_wesfarm(argv: list[str]) -> argparse.Namespace:
    assert argv and argv[0] == "wesfarm", f"not a wesfarm command: {argv}"
    try:
        return wesfarm_parser().parse_args(argv[1:])
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


def test_services_and_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "worker", "prometheus"} <= set(services)
    command = services["redis"]["command"]
    assert command[0] == "redis-server" and "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"


def test_worker_runs_a_real_wesfarm_command_and_scales(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    args = parse_wesfarm(worker["command"])
    assert args.command == "worker" and args.handler.__module__.endswith("worker_cmd")
    assert args.metrics_port == 9464
    # `docker compose up --scale worker=4`: no fixed name, no host port to collide on
    assert "container_name" not in worker
    assert "ports" not in worker
    assert str(args.metrics_port) in [str(p) for p in worker.get("expose", [])]
    assert "build" in worker
    env = worker["environment"]
    assert env["WESFARM_REDIS_URL"] == "redis://redis:6379/0"
    check_settings_env(env)


def test_dockerfile_builds_the_package_and_runs_the_same_command(
    compose: dict[str, Any],
) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^\s+(&& )?pip install \. ", text, re.M)  # in the RUN that has gcc
    [cmd] = re.findall(r"^CMD (\[.*\])$", text, re.M)
    assert json.loads(cmd) == compose["services"]["worker"]["command"]
    parse_wesfarm(json.loads(cmd))
    envs = dict(re.findall(r"^ENV (WESFARM_[A-Z_]+)=(\S+)$", text, re.M))
    check_settings_env(envs)
    scripts = (ROOT / "pyproject.toml").read_text()
    assert 'wesfarm = "producer.cli:main"' in scripts  # the `wesfarm` the image calls


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


def test_the_minimal_yaml_reader() -> None:
    text = """
# comment
a: 1
b:
  - x
  - "y: z"  # trailing comment
  - k: v
    n: [1, "two"]
c: 'q'
d:
e: redis://h:1/0
"""
    assert parse_yaml(text) == {
        "a": 1, "b": ["x", "y: z", {"k": "v", "n": [1, "two"]}], "c": "q", "d": None,
        "e": "redis://h:1/0",
    }
