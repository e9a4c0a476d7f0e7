"""`wesfarm`: one entry point; each subcommand is a module with `register(subparsers)`.

Modules are named here and imported only for the command being run, so `wesfarm run`
never loads Redis or arq, and `wesfarm worker` never loads the bench. The worker's and
the bench's commands live in their own packages (worker/command.py, bench/command.py):
this table names them, it does not reach into them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from producer.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, err

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
    "status": "producer.commands.operate",
    "clean": "producer.commands.operate",
    "demo": "producer.commands.demo",
    "bench": "bench.command",
    "calibrate": "bench.command",
}


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (with `wanted`) that command in full and the others as names."""
    parser = argparse.ArgumentParser(prog="wesfarm", description=__doc__.splitlines()[0],
                                     epilog="--version prints the release; --debug, anywhere "
                                     "on the line, shows a traceback where an error would "
                                     "print one line")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
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


def version() -> str:
    """`wesfarm --version`: the shipped fee schedule's line (engine/version.py)."""
    from config import FeePrices
    from engine.version import version_line

    return version_line(str(FeePrices.model_fields["version"].default))


def main(argv: Sequence[str] | None = None) -> int:
    """Every command ends in its exit code (producer/exits.py) and at most one line of
    error, never a traceback (`--debug`, anywhere on the line, shows it)."""
    from config.gc_pace import pace_collector

    pace_collector()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv[:1] == ["--version"]:
        print(version())
        return EXIT_OK
    from config.environment import unknown_variables

    for name in unknown_variables(os.environ):
        err(f"warning: {name} is not a wesfarm setting (ignored; `wesfarm config` shows them)")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(wanted).parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        err("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `wesfarm ... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:
        if debug:
            raise
        exit_code = getattr(exc, "exit_code", None)
        if isinstance(exit_code, int):
            err(str(exc))
            return exit_code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        err(f"{type(exc).__name__}: {first} (`--debug` shows where)")
        return EXIT_FAILED
    return code


if __name__ == "__main__":
    raise SystemExit(main())
