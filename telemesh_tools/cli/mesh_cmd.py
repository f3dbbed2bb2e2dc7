"""`telemesh mesh render|check`: regenerate mesh/ from the allow-list, or check it."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from telemesh_tools.mesh import allowlist as allowlist_module
from telemesh_tools.mesh import render


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "mesh", help="render the local Envoy configs and Istio manifests from mesh/allowlist.yaml"
    )
    actions = parser.add_subparsers(dest="mesh_action", required=True)
    actions.add_parser("render", help="rewrite mesh/local/ and mesh/istio/base/").set_defaults(
        func=run_render
    )
    actions.add_parser(
        "check", help="check the allow-list against the protos and the rendered files"
    ).set_defaults(func=run_check)


def _load_checked() -> allowlist_module.AllowList | None:
    allowlist = allowlist_module.load()
    problems = allowlist_module.problems(
        allowlist, allowlist_module.contract_methods(allowlist.services)
    )
    for problem in problems:
        print(f"allow-list: {problem}", file=sys.stderr)
    return None if problems else allowlist


def run_render(_args: argparse.Namespace) -> int:
    allowlist = _load_checked()
    if allowlist is None:
        return 1
    changed = render.write(allowlist)
    for path in changed:
        print(f"rendered {path}")
    if not changed:
        print("mesh/ is up to date")
    return 0


def run_check(_args: argparse.Namespace) -> int:
    allowlist = _load_checked()
    if allowlist is None:
        return 1
    stale = render.stale_files(allowlist)
    for path in stale:
        print(f"stale: {path} (run `telemesh mesh render`)", file=sys.stderr)
    return 1 if stale else 0
