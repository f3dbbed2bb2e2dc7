"""`telemesh demo`: a whole video visit on this machine (see telemesh_tools.demo.run)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from telemesh.config import RuntimeSettings, load


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="run a whole video visit through the local mesh and show its trace"
    )
    parser.add_argument(
        "--home", type=Path, help="state folder of the demo (default $TELEMESH_HOME/demo, emptied)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from telemesh_tools.demo.run import demo  # aiortc and the mesh load only for the demo

    home = (args.home or load(RuntimeSettings).home / "demo").resolve()
    asyncio.run(demo(home))
    return 0
