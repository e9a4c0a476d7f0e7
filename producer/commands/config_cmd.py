"""`wesfarm config`: print the effective settings (environment + optional TOML file)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from config import SettingsError, load_settings


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="print the effective settings")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"wesfarm config: {exc}", file=sys.stderr)
        return 2
    shown = settings.model_dump(mode="json")
    if shown.get("cache_secret"):
        shown["cache_secret"] = "(set)"
    print(json.dumps(shown, indent=2))
    return 0
