"""`wesfarm`: one entry point; each subcommand is a module with `register(subparsers)`.

Modules are named here and imported only for the command being run, so `wesfarm run`
never loads Redis or arq, and `wesfarm worker` never loads the bench. The worker's and
the bench's commands live in their own packages (worker/command.py, bench/command.py):
this table names them, it does not reach into them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "run": "producer.commands.run",
    "config": "producer.commands.config_cmd",
    "worker": "worker.command",
    "deploy": "producer.commands.farm",
    "call": "producer.commands.farm",
    "submit": "producer.commands.submit",
    "state": "producer.commands.state_cmd",
    "block": "producer.commands.state_cmd",
    "state-root": "producer.commands.state_cmd",
    "demo": "producer.commands.demo",
    "bench": "bench.command",
    "calibrate": "bench.command",
}


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (with `wanted`) that command in full and the others as names."""
    parser = argparse.ArgumentParser(prog="wesfarm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    registered: set[str] = set()
    for name, module_name in COMMANDS.items():
        if module_name in registered:
            continue
        if wanted is not None and COMMANDS[wanted] != module_name:
            sub.add_parser(name, help=f"(see `wesfarm {name} --help`)")
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
        registered.add(module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(wanted).parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
