"""`$TELEMESH_HOME/endpoints.json`: where a running local mesh is, and who runs it.

`telemesh up` writes it once everything is healthy and removes it when it stops;
`telemesh down` reads it to find the supervisor (and, if that died, its children);
`start_up` (the demo, the tests) runs `telemesh up` as a child and waits for it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from telemesh_tools.stack.process import ManagedProcess

ENDPOINTS_FILE = "endpoints.json"


def endpoints_path(home: Path) -> Path:
    return home / ENDPOINTS_FILE


def write_endpoints(home: Path, endpoints: dict[str, Any]) -> Path:
    """Writes the file atomically: a reader sees all of it or none."""
    path = endpoints_path(home)
    descriptor, temporary = tempfile.mkstemp(prefix=".endpoints-", dir=home)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(endpoints, handle, indent=2)
    os.replace(temporary, path)
    return path


def read_endpoints(home: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(endpoints_path(home).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def _proc_text(pid: int, name: str) -> str:
    try:
        return (
            Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = _proc_text(pid, "stat").split(")")[-1].split()
    return not state or state[0] != "Z"  # a zombie has exited


def belongs_to(pid: int, home: Path) -> bool:
    """Whether live process `pid` is part of the stack in `home` (not a reused pid):
    Envoys name their config under `home`, services have TELEMESH_HOME set to it."""
    if not alive(pid):
        return False
    return str(home) in _proc_text(pid, "cmdline") + " " + _proc_text(pid, "environ")


def is_supervisor(pid: int) -> bool:
    """Whether live process `pid` is a `telemesh up`."""
    words = _proc_text(pid, "cmdline").split()
    return alive(pid) and "up" in words and any("telemesh" in word for word in words)


def running_supervisor(home: Path) -> int | None:
    """The pid of the `telemesh up` serving `home`, if it is alive."""
    endpoints = read_endpoints(home)
    if endpoints is None:
        return None
    pid = int(endpoints.get("pid", 0))
    return pid if pid and is_supervisor(pid) else None


def telemesh_command(*args: str) -> list[str]:
    """`telemesh ARGS`, run by this interpreter."""
    return [sys.executable, "-m", "telemesh_tools.cli.main", *args]


def start_up(
    home: Path,
    env: Mapping[str, str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 120.0,
    up_args: Sequence[str] = (),
) -> tuple[ManagedProcess, dict[str, Any]]:
    """`telemesh up` in `home` (edge on a free port, and `up_args`) as a child process,
    waited for until it wrote its endpoints; stopped again if it does not get there."""
    process = ManagedProcess(
        "telemesh-up",
        telemesh_command("up", "--edge-port", "0", *up_args),
        {**env, "TELEMESH_HOME": str(home)},
        log_path,
        cwd=cwd,
    )
    # Ready when the endpoints are this supervisor's (not a file left by an earlier one).
    process.ready = lambda: (read_endpoints(home) or {}).get("pid") == process.pid
    process.start()
    try:
        process.wait_ready(timeout)
        endpoints = read_endpoints(home)
        if endpoints is None:
            raise RuntimeError(f"telemesh up stopped as it started:\n{process.logs()[-4000:]}")
    except BaseException:
        process.stop(timeout=60)
        raise
    return process, endpoints
