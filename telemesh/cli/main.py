"""`telemesh`: the command line of the project (tokens, configuration, and more)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from telemesh.config import RuntimeSettings, describe

# Each module in telemesh/cli/ named here has `add_parser(subcommands)`, which sets
# `func` on its parser; add a line to add a command.
COMMAND_MODULES = [
    "telemesh.cli.token_cmd",
    "telemesh.cli.audit_cmd",
    "telemesh.cli.trace_cmd",
    "telemesh.cli.mesh_cmd",
    "telemesh.cli.up_cmd",
    "telemesh.cli.demo_cmd",
]


def _config(_args: argparse.Namespace) -> int:
    print("| Variable | Default | Meaning |")
    print("| --- | --- | --- |")
    for env, default, doc in describe(RuntimeSettings):
        print(f"| `{env}` | `{default}` | {doc} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(commands)
    config = commands.add_parser("config", help="print the runtime settings as a table")
    config.set_defaults(func=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
