"""`wesfarm config`: print the effective settings (environment + optional TOML file),
secrets masked."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from config import SettingsError, load_settings
from config.environment import shown


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"wesfarm config: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(shown(settings), indent=2))
    return 0
