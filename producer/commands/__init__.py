"""One module per `wesfarm` subcommand: each has `register(subparsers)` and `run(args) -> int`."""
