"""Everything under TELEMESH_HOME is owner-only (files 0600, folders 0700), and a
service warns at start when its home is open to others."""

from __future__ import annotations

import asyncio
import stat
import subprocess
from pathlib import Path

from telemesh.config import SERVICES
from telemesh_tools.stack.endpoints import telemesh_command
from tests.support.flows import Flows
from tests.support.harness import REPO, MeshUp, Stack, clean_env

WARNING = "readable by group or others"


def _exposed(home: Path) -> list[str]:
    """Every file or folder under `home` (itself included) with more than owner-only."""
    found = []
    for path in (home, *home.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or stat.S_ISSOCK(mode):
            continue
        wanted = 0o700 if stat.S_ISDIR(mode) else 0o600
        if stat.S_IMODE(mode) & ~wanted:
            found.append(f"{path.relative_to(home)} {oct(stat.S_IMODE(mode))}")
    return found


def _telemesh(home: Path, *args: str) -> None:
    subprocess.run(
        telemesh_command(*args),
        env=clean_env(home),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


async def test_services_and_commands_leave_only_owner_only_files(tmp_path: Path) -> None:
    home = tmp_path / "fresh-home"  # created by the project itself, not by the test
    stack = Stack(home, "sqlite")
    try:
        stack.start(*SERVICES)
        flows = Flows(stack)
        try:
            visit = await flows.ready_visit()
            await flows.admit(visit)
            await flows.complete(visit)  # writes every database, its -wal and -shm
        finally:
            await flows.close()
        _telemesh(home, "token", "--patient", "p-modes")
        assert list(home.glob("*.db-wal")), "the databases are in WAL mode: -wal files exist"
        assert (home / "session" / "phi-keys.json").exists()
        assert (home / "billing" / "phi-keys.json").exists()
        assert not _exposed(home), _exposed(home)
        assert WARNING not in stack.logs()
    finally:
        stack.close()


async def test_telemesh_up_leaves_only_owner_only_files(tmp_path: Path) -> None:
    home = tmp_path / "mesh-home"
    mesh = await asyncio.to_thread(MeshUp.start, home)
    try:
        assert (home / "endpoints.json").exists()
        assert (home / "ca").is_dir()
        assert list((home / "mesh" / "logs").glob("*.log")), "the logs are there"
        assert not _exposed(home), _exposed(home)
    finally:
        await asyncio.to_thread(mesh.stop)
    assert (home / "traces.db").exists(), "the trace store was written"
    assert not _exposed(home), _exposed(home)


def test_a_service_warns_when_its_home_is_open_to_others(tmp_path: Path) -> None:
    home = tmp_path / "open-home"
    stack = Stack(home, "sqlite")
    try:
        stack.start("consent")
        assert WARNING not in stack.logs(), "an owner-only home gets no warning"
        stack["consent"].stop()
        home.chmod(0o755)
        (home / "consent.db").chmod(0o644)
        stack["consent"].start().wait_ready()
        logs = stack.logs()
        warnings = [line for line in logs.splitlines() if WARNING in line]
        assert any('"what": "home"' in line for line in warnings), logs[-2000:]
        assert any('"what": "database"' in line for line in warnings), logs[-2000:]
        assert all('"level": "warning"' in line for line in warnings)
    finally:
        stack.close()
