"""`telemesh up` and `telemesh down`: the whole mesh on this machine.

`up` starts the four services (each on a Unix socket only its sidecar reaches), their
Envoy sidecars, the edge Envoy and the local trace receiver; waits
until all are healthy; prints the endpoints and writes them to
`$TELEMESH_HOME/endpoints.json`; renews certificates at half their life; and stops
everything on Ctrl-C or SIGTERM. `down` stops the stack that `up` started.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Any

import psycopg

from telemesh.config import SERVICES, RuntimeSettings, load
from telemesh_tools.mesh.settings import MeshSettings
from telemesh_tools.stack.databases import DatabaseChoiceError, service_databases
from telemesh_tools.stack.endpoints import (
    alive,
    belongs_to,
    endpoints_path,
    read_endpoints,
    running_supervisor,
    write_endpoints,
)
from telemesh_tools.stack.local_mesh import LocalMesh, TraceReceiver


def add_parser(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="start the services, their sidecars and the edge; Ctrl-C stops them"
    )
    up.add_argument(
        "--edge-port",
        type=int,
        default=None,
        help="edge port (default TELEMESH_EDGE_PORT; 0 picks one)",
    )
    up.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="replicas of every service, each with its own sidecar (more than 1 needs --database)",
    )
    up.add_argument(
        "--database",
        default="",
        help="PostgreSQL server for every service's database, e.g. "
        "postgresql://postgres@127.0.0.1:5432/telemesh (each service gets telemesh_<service>, "
        "created when missing); default: SQLite files in TELEMESH_HOME",
    )
    up.set_defaults(func=run_up)
    down = commands.add_parser("down", help="stop the stack that `telemesh up` started")
    down.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to stop")
    down.set_defaults(func=run_down)


def _print_endpoints(endpoints: dict[str, Any]) -> None:
    edge = endpoints["edge"]
    print("Telemesh is up. Ctrl-C (or `telemesh down`) stops it.")
    print(f"  edge      {edge['url']}  (gRPC-web and gRPC over TLS; end-user JWT required)")
    for service in endpoints["services"].values():
        for replica in service["replicas"]:
            print(
                f"  {replica['name']:<11} sidecar {replica['inbound']} (mTLS)"
                f"  service {replica['socket']}"
            )
    print(f"  CA        {endpoints['ca_bundle']}  (trust it to call the edge)")
    print(f"  traces    {endpoints['trace_receiver']}  (telemesh trace VISIT_ID draws one)")
    print(f"  logs      {endpoints['logs']}")
    print(f"  endpoints {endpoints['endpoints_file']}")
    print("  a token:  telemesh token --patient p-1", flush=True)


def run_up(args: argparse.Namespace) -> int:
    runtime = load(RuntimeSettings)
    settings = load(MeshSettings)
    if args.edge_port is not None:
        settings = dataclasses.replace(settings, edge_port=args.edge_port)
    home = runtime.home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    running = running_supervisor(home)
    if running is not None:
        print(f"telemesh up: a stack already runs here (pid {running}); `telemesh down` stops it")
        return 1

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())

    def renewed(names: list[str]) -> None:
        print(f"renewed certificates: {', '.join(names)}", flush=True)

    try:
        databases = service_databases(args.database, SERVICES, args.replicas)
    except (DatabaseChoiceError, psycopg.Error) as error:
        print(f"telemesh up: {error}", file=sys.stderr)
        return 2
    mesh = LocalMesh(
        home,
        runtime,
        settings,
        trace_receiver=TraceReceiver.local(home),
        on_rotation=renewed,
        replicas=args.replicas,
        databases=databases,
    )
    print(f"starting the mesh in {home} ...", flush=True)
    try:
        mesh.start()
    except (RuntimeError, TimeoutError, OSError) as error:
        print(f"telemesh up: {error}", file=sys.stderr)
        return 1
    endpoints = {
        "pid": os.getpid(),
        **mesh.endpoints(),
        "endpoints_file": str(endpoints_path(home)),
    }
    write_endpoints(home, endpoints)
    _print_endpoints(endpoints)

    status = 0
    try:
        while not stopping.wait(0.5):
            restarted = mesh.restart_exited_replicas()
            for name in restarted:
                print(f"telemesh up: {name} stopped on its own; restarting it", flush=True)
            if restarted:  # their new process ids
                endpoints.update(mesh.endpoints())
                write_endpoints(home, endpoints)
            exited = mesh.exited()
            if exited and not stopping.is_set():
                print(
                    f"telemesh up: {', '.join(exited)} stopped on its own; stopping everything "
                    f"(logs in {mesh.logs_dir})",
                    file=sys.stderr,
                )
                status = 1
                break
    finally:
        print("stopping ...", flush=True)
        mesh.stop()
        endpoints_path(home).unlink(missing_ok=True)
    print("stopped", flush=True)
    return status


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def run_down(args: argparse.Namespace) -> int:
    home = load(RuntimeSettings).home.resolve()
    endpoints = read_endpoints(home)
    if endpoints is None:
        print(f"no stack is running in {home}")
        return 0
    supervisor = running_supervisor(home)
    if supervisor is not None:
        os.kill(supervisor, signal.SIGTERM)
        if not _wait_gone([supervisor], args.timeout):
            print(f"telemesh down: pid {supervisor} did not stop in {args.timeout:.0f}s")
            return 1
    # A supervisor that was killed leaves its children: stop those that are still ours.
    leftovers = [pid for pid in endpoints.get("processes", {}).values() if belongs_to(pid, home)]
    for pid in leftovers:
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(leftovers, args.timeout):
        for pid in leftovers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    endpoints_path(home).unlink(missing_ok=True)
    print("stopped" if supervisor or leftovers else f"no stack is running in {home}")
    return 0
