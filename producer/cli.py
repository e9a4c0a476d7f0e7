"""`wesfarm`: one entry point, one module per subcommand (producer/commands/)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand name -> module in producer.commands; imported lazily so `wesfarm run`
# never loads Redis or arq, and `wesfarm worker` never loads the bench.
COMMANDS = {
    "run": "run",
    "config": "config_cmd",
    "worker": "worker_cmd",
    "deploy": "farm",
    "call": "farm",
    "submit": "submit",
    "state": "state_cmd",
    "demo": "demo",
    "bench": "bench",
    "calibrate": "calibrate",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="wesfarm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    registered: set[str] = set()
    for name, module_name in COMMANDS.items():
        if module_name in registered:
            continue
        if wanted is not None and COMMANDS[wanted] != module_name:
            sub.add_parser(name, help=f"(see `wesfarm {name} --help`)")
            continue
        try:
            module = importlib.import_module(f"producer.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"producer.commands.{module_name}":
                raise
            continue
        module.register(sub)
        registered.add(module_name)
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
