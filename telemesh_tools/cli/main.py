"""`telemesh`: the command line of the project (tokens, configuration, and more)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from telemesh.config import describe
from telemesh.file_modes import owner_only

# Each module in telemesh_tools/cli/ named here has `add_parser(subcommands)`, which sets
# `func` on its parser; add a line to add a command.
COMMAND_MODULES = [
    "telemesh_tools.cli.token_cmd",
    "telemesh_tools.cli.audit_cmd",
    "telemesh_tools.cli.trace_cmd",
    "telemesh_tools.cli.traces_cmd",
    "telemesh_tools.cli.mesh_cmd",
    "telemesh_tools.cli.up_cmd",
    "telemesh_tools.cli.demo_cmd",
]


# Every settings class, by where it is read, for `telemesh config`.
SETTINGS = [
    ("every service", "telemesh.config:RuntimeSettings"),
    ("telemetry", "telemesh.telemetry:TelemetrySettings"),
    ("databases", "telemesh.db:DatabaseSettings"),
    ("session", "svc_session.settings:SessionSettings"),
    ("signaling", "svc_signaling.settings:SignalingSettings"),
    ("consent", "svc_consent.settings:ConsentSettings"),
    ("billing", "svc_billing.settings:BillingSettings"),
    ("telemesh up", "telemesh_tools.mesh.settings:MeshSettings"),
    ("trace receiver", "telemesh_tools.tracestore.receiver:ReceiverSettings"),
    ("web apps", "telemesh_tools.webapp:WebAppSettings"),
    ("telemesh demo", "telemesh_tools.demo.run:DemoPatient"),
]


def _config(_args: argparse.Namespace) -> int:
    """Prints every setting (variable, default, meaning) as Markdown tables."""
    for title, where in SETTINGS:
        module, _, name = where.partition(":")
        print(f"\n### {title}\n\n| Variable | Default | Meaning |\n| --- | --- | --- |")
        for env, default, doc in describe(getattr(importlib.import_module(module), name)):
            print(f"| `{env}` | `{default}` | {doc} |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemesh", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_parser(commands)
    config = commands.add_parser("config", help="print every setting as Markdown tables")
    config.set_defaults(func=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    owner_only()  # what a command creates under TELEMESH_HOME (and its children) too
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
