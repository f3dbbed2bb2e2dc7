"""Podman for the container tests: the image built once, containers started and always
removed, the machine's one set of host ports taken by one test session at a time.

Everything goes through scripts/podman.sh, so the tests use the settings that work on
these machines (scripts/containers.conf: runc, cgroupfs, host network) as `make image`
does. The base image comes from Debian packages (scripts/base-image.sh), cached under
/var/tmp/telemesh-images between runs; the image from scripts/build-image.sh, the script
behind `make image`, with the name the Kubernetes manifests run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from telemesh_tools.mesh.istio import IMAGE, RUN_AS, STATE_DIR
from telemesh_tools.stack.process import ManagedProcess, grpc_health_probe
from tests.support.harness import REPO

PODMAN = REPO / "scripts" / "podman.sh"
CACHE = Path(os.environ.get("TELEMESH_IMAGE_CACHE", "/var/tmp/telemesh-images"))
TOOLS = ("podman", "runc", "debootstrap", "catatonit")


def missing() -> str | None:
    """Why the container tests cannot run here, or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return (
            f"{', '.join(absent)} not found: the container tests need Debian's podman, runc, "
            "catatonit and debootstrap (scripts/setup.sh installs them)"
        )
    if os.geteuid() != 0:
        return "the container tests need root (debootstrap, rootful podman with runc)"
    return None


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PODMAN), *args], capture_output=True, text=True, timeout=timeout, check=check
    )


@contextlib.contextmanager
def machine_lock(timeout: float = 900) -> Iterator[None]:
    """Held while a session's containers run: they use this machine's fixed ports (host
    network) and podman's global names (secrets, pods), so another session waits."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "containers.lock").open("w") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("another test session kept the container lock") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _script(name: str, env: Mapping[str, str], timeout: float) -> str:
    result = subprocess.run(
        [str(REPO / "scripts" / name)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/{name} failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout.strip().splitlines()[-1]


@dataclass(frozen=True)
class BuiltImage:
    name: str  # as the manifests name it (telemesh/telemesh:<version>)
    id: str  # what this session runs, whatever another checkout's build names later
    base: str
    size_mb: int


def build_image() -> BuiltImage:
    """The Debian base (built once per machine, then cached) and the image from it,
    built by the script behind `make image`."""
    base = _script("base-image.sh", {}, timeout=600)
    line = _script("build-image.sh", {"BASE_IMAGE": base, "IMAGE": IMAGE}, timeout=900)
    name, size, unit = line.split()
    if name != IMAGE or unit != "MB":
        raise RuntimeError(f"scripts/build-image.sh said {line!r}")
    image_id = podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    return BuiltImage(name, image_id, base, int(size))


def remove_container(name: str) -> None:
    podman("rm", "--force", "--time", "0", name, check=False)


@dataclass
class Container(ManagedProcess):
    """`podman run` in the foreground (its log is the container's output): SIGTERM reaches
    the service through podman's signal proxy, so stopping it drains it as a pod's
    termination would. `owned` paths are handed to the image's user before it starts."""

    owned: Sequence[Path] = ()

    def start(self) -> Container:
        remove_container(self.name)  # a leftover of a killed run
        for path in self.owned:
            os.chown(path, RUN_AS, RUN_AS)
        super().start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        try:
            super().stop(timeout)
        finally:
            remove_container(self.name)


def container(
    name: str,
    image: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    state: Path,
    health: str = "",
    ready: Callable[[], bool] | None = None,
    mounts: Sequence[tuple[Path, str, str]] = (),
    owned: Sequence[Path] = (),
) -> Container:
    """A service container locked down as the Kubernetes manifests lock it down:
    read-only root, a tmpfs for scratch, its own empty `state` folder as TELEMESH_HOME
    (the pod's emptyDir), no capabilities, no privilege escalation, the image's own
    user; host network. Ready when `health` answers SERVING (or when `ready()` says so)."""
    state.mkdir(mode=0o700)
    command = [
        str(PODMAN),
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--volume",
        f"{state}:{STATE_DIR}:rw",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    for source, target, mode in mounts:
        command += ["--volume", f"{source}:{target}:{mode}"]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    command += [image, *argv]
    return Container(
        name,
        command,
        dict(os.environ),
        log_path,
        ready=ready or grpc_health_probe(health),
        owned=[state, *owned],
    )
