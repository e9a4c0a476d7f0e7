"""Settings: docs/wesfarm.example.toml documents every one and loads as written; the queue
derives from the prefix; unknown names are refused or warned about."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest

from config import FeePrices, PolicyLimits, Settings, SettingsError, load_settings
from config.environment import unknown_variables
from tests.support import ROOT

EXAMPLE = ROOT / "docs" / "wesfarm.example.toml"


def _uncommented(text: str) -> str:
    """The example with every `# name = value` line made live (prose stays comments)."""
    return "\n".join(re.sub(r"^# (\w+ = .*)$", r"\1", line) for line in text.splitlines())


def test_the_example_names_every_setting_and_loads(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    live = tomllib.loads(_uncommented(EXAMPLE.read_text()))
    top = {k for k in live if k not in ("limits", "fees")}
    assert top == set(Settings.model_fields) - {"limits", "fees"}
    assert set(live["limits"]) == set(PolicyLimits.model_fields)
    assert set(live["fees"]) == set(FeePrices.model_fields)
    # the documented defaults are the defaults (cache_dir, executors, secrets aside)
    assert live["limits"] == PolicyLimits().model_dump()
    assert live["fees"] == FeePrices().model_dump()
    path = tmp_path / "wesfarm.toml"
    path.write_text(_uncommented(EXAMPLE.read_text()))
    for name in list(os.environ):
        if name.startswith("WESFARM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("WESFARM_CONFIG_FILE", str(path))
    settings = load_settings()
    assert settings.denied_capabilities == {"untrusted": ["state-write", "events"]}
    assert settings.queue_name == "wesfarm:queue"


def test_the_queue_derives_from_the_prefix_unless_set() -> None:
    assert load_settings(key_prefix="farm-a").queue_name == "farm-a:queue"
    assert load_settings(key_prefix="farm-a", queue_name="q").queue_name == "q"


def test_unknown_names_are_refused_with_the_valid_ones_or_warned() -> None:
    with pytest.raises(SettingsError, match=r"limits\.max_memory_page: not a setting "
                       r"\(did you mean max_memory_pages\?"):
        load_settings(limits={"max_memory_page": 1})
    with pytest.raises(SettingsError, match=r"fees\.instructions: not a setting"):
        load_settings(fees={"instructions": 1})
    assert unknown_variables({"WESFARM_EXECUTERS": "1", "WESFARM_EXECUTORS": "1",
                              "WESFARM_FEES__HASH": "1", "WESFARM_FEES__HASHES": "1",
                              "WESFARM_CONFIG_FILE": "x", "HOME": "/"}) == [
        "WESFARM_EXECUTERS", "WESFARM_FEES__HASHES"]
