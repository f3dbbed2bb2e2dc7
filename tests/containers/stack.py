"""The local mesh with its services in containers: `telemesh up`'s Envoys (sidecars and
edge, mutual TLS, RBAC from the allow-list, JWT at the edge) on the host, and each
service started from the image with `podman run`, as a pod's container is.

LocalMesh builds and runs everything; only the service processes differ. Each service
still serves on its Unix socket in the mesh's run folder and reaches its peers through
its sidecar's outbound socket; the run folder is mounted into its container at the same
path and handed to the image's user, and so is its outbound socket (the sidecar runs as
root here). Its TELEMESH_HOME is a tmpfs, its database a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from telemesh_tools.mesh.istio import JWKS_DIR, RUN_AS, STATE_DIR
from telemesh_tools.stack.local_mesh import LocalMesh
from tests.containers.podman import container

# What a container takes from the mesh's environment for a service (never the host's
# PATH, HOME or virtual environment).
PASSED = ("TELEMESH_", "OTEL_")


@dataclass
class ContainerMesh(LocalMesh):
    image: str = ""
    databases: Mapping[str, str] = field(default_factory=dict)
    mounts: Sequence[tuple[Path, str, str]] = ()  # (host path, container path, ro|rw)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def container_name(self, service: str) -> str:
        return f"telemesh-test-{self.run_id}-{service}"

    def prepare(self) -> None:
        super().prepare()
        jwks = self.home / "container-jwks"
        jwks.mkdir(exist_ok=True)
        shutil.copy(self.runtime.jwks_path(), jwks / "jwks.json")
        for path in (jwks, jwks / "jwks.json"):
            os.chown(path, RUN_AS, RUN_AS)
        run_dir = self.layout.run_dir
        (self.home / "container-state").mkdir(exist_ok=True)
        for service in self.services:
            env = {
                key: value
                for key, value in self.service_environment(service).items()
                if key.startswith(PASSED) and not key.startswith("TELEMESH_TEST_")
            }
            env.update(
                TELEMESH_HOME=STATE_DIR,
                TELEMESH_DATABASE_URL=self.databases[service],
                TELEMESH_DEV_ISSUER="0",
                TELEMESH_JWKS_FILE=f"{JWKS_DIR}/jwks.json",
            )
            self.service_processes[service] = container(
                self.container_name(service),
                self.image,
                ["python", "-m", f"svc_{service}"],
                env=env,
                log_path=self.logs_dir / f"{service}.log",
                health=f"unix:{self.layout.service_socket(service)}",
                state=self.home / "container-state" / service,
                mounts=[(run_dir, str(run_dir), "rw"), (jwks, JWKS_DIR, "ro"), *self.mounts],
                # The sidecars are up before the services start (LocalMesh.start).
                owned=[run_dir, self.layout.outbound_socket(service)],
            )
