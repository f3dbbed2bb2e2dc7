"""Child processes that Telemesh tooling starts and stops: services, Envoys, receivers.

One supervisor for `telemesh up`, the tests and the benchmarks: start with a log file,
wait until ready, stop by the process's own id (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from telemesh.file_modes import FILE_MODE, private_folder

# Ports this process handed out: the kernel may offer a port again as soon as the probe
# socket closes, and a stack asks for dozens before anything binds them.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now, and that this process
    has not handed out before."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def grpc_health_probe(address: str, service: str = "") -> Callable[[], bool]:
    """A readiness probe: the gRPC health service answers SERVING."""

    def probe() -> bool:
        with grpc.insecure_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=1
                )
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


def tcp_probe(port: int, host: str = "127.0.0.1") -> Callable[[], bool]:
    """A readiness probe: something accepts TCP connections on `host:port`."""

    def probe() -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex((host, port)) == 0

    return probe


@dataclass
class ManagedProcess:
    """One child process with its own log file."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path | None = None
    ready: Callable[[], bool] | None = None
    # In a session of its own, a terminal's Ctrl-C reaches only the supervisor, which
    # then stops its children in order (`telemesh up`).
    new_session: bool = False
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    _signalled: bool = field(default=False, repr=False)

    def start(self) -> ManagedProcess:
        private_folder(self.log_path.parent)
        # Owner-only: logs carry identifiers that are nobody else's business.
        descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        self._log = os.fdopen(descriptor, "ab")
        self._signalled = False
        self.process = subprocess.Popen(
            list(self.argv),
            env=self.env,
            cwd=self.cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=self.new_session,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.logs()[-4000:]}"
                )
            if self.ready is None or self.ready():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} not ready after {timeout}s:\n{self.logs()[-4000:]}"
                )
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def signal_stop(self) -> None:
        """SIGTERM (once) without waiting: it starts draining (see stop_all)."""
        if self.process is not None and self.process.poll() is None and not self._signalled:
            self.process.send_signal(signal.SIGTERM)
            self._signalled = True

    def stop(self, timeout: float = 15.0) -> None:
        """Stops it whatever state it is in, and closes its log."""
        if self.process is not None and self.process.poll() is None:
            self.signal_stop()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start()
        self.wait_ready(timeout)


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 15.0) -> None:
    """Stops `processes` together: all are signalled first, so they drain at once."""
    group = list(processes)
    for process in group:
        process.signal_stop()
    for process in group:
        process.stop(timeout)


def module_process(
    name: str,
    module: str,
    env: dict[str, str],
    log_path: Path,
    health_address: str,
    *,
    cwd: Path | None = None,
    new_session: bool = False,
) -> ManagedProcess:
    """`python -m module` (this interpreter), ready when its gRPC health service at
    `health_address` says SERVING: the services, the trace receiver, benchmark servers."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", module],
        env,
        log_path,
        cwd=cwd,
        ready=grpc_health_probe(health_address),
        new_session=new_session,
    )
