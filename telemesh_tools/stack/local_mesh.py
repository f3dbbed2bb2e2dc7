"""The mesh on one machine: the services behind their Envoy sidecars, and the edge.

Each service serves on a Unix socket that only its sidecar reaches; the sidecar's
inbound listener (mutual TLS, RBAC from the allow-list) is the service's only door from
the network. The service reaches the others through its sidecar's outbound listener
(another Unix socket: plaintext in, mutual TLS out). The edge Envoy is the door for
browsers and apps (TLS, gRPC-web, CORS, JWT); it fetches the token keys from a small
JWKS endpoint this process serves. The local CA issues every workload's SPIFFE
certificate and renews it at half its life; Envoy picks the new file up without a
restart.

`telemesh up`, the mesh tests and the mesh benchmark all run this one class.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from telemesh.config import SERVICES, RuntimeSettings
from telemesh.identity.tokens import DevIssuer
from telemesh_tools.mesh import envoy as envoy_config
from telemesh_tools.mesh.allowlist import REPO
from telemesh_tools.mesh.ca import LocalCA, ca_folder, spiffe_id
from telemesh_tools.mesh.identities import IdentityRotator, Workload, identity_folder
from telemesh_tools.mesh.settings import MeshSettings
from telemesh_tools.stack.envoy import envoy_process
from telemesh_tools.stack.jwks_endpoint import JwksEndpoint
from telemesh_tools.stack.process import ManagedProcess, free_port, module_process, stop_all

LOCAL_CONFIGS = REPO / "mesh" / "local"
EDGE = "edge"
# A Unix socket path longer than this does not fit in sockaddr_un (108 bytes, with margin).
SOCKET_PATH_LIMIT = 100
# Settings that the mesh decides for each service; a value in the caller's environment
# would point a service around its sidecar.
_MESH_OWNED = (
    "TELEMESH_LISTEN",
    "TELEMESH_DATABASE_URL",
    *(f"TELEMESH_{name.upper()}_ADDR" for name in SERVICES),
)


def load_templates(folder: Path = LOCAL_CONFIGS) -> dict[str, Any]:
    """The rendered Envoy configs in mesh/local/, by name (`sidecar-<service>`, `edge`)."""
    return {
        path.stem: yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        for path in sorted(folder.glob("*.yaml"))
    }


def sidecar_name(service: str) -> str:
    return f"sidecar-{service}"


@dataclass(frozen=True)
class TraceReceiver:
    """A local OTLP/gRPC trace receiver started before everything else (issue 8)."""

    process: ManagedProcess
    host: str
    port: int

    @property
    def otlp_endpoint(self) -> str:
        """For OTEL_EXPORTER_OTLP_ENDPOINT, for example http://127.0.0.1:4317."""
        return f"http://{self.host}:{self.port}"

    @classmethod
    def local(cls, home: Path) -> TraceReceiver:
        """The local trace receiver (telemesh_tools.tracestore.receiver) on a free port: the
        services export spans to it and every Envoy's OpenTelemetry tracer points at it;
        `telemesh trace` reads what it stores (in `home`, or TELEMESH_TRACE_STORE)."""
        host, port = envoy_config.HOST, free_port()
        env = {**os.environ, "TELEMESH_HOME": str(home), "TELEMESH_TRACE_LISTEN": f"{host}:{port}"}
        process = module_process(
            "trace-receiver",
            "telemesh_tools.tracestore.receiver",
            env,
            home / "mesh" / "logs" / "trace-receiver.log",
            f"{host}:{port}",
            cwd=REPO,
            new_session=True,
        )
        return cls(process, host, port)


def instance_name(service: str, replica: int) -> str:
    """A replica's name: the service's own for the first (one replica looks as it always
    did), `<service>-<n>` for the others."""
    return service if replica == 0 else f"{service}-{replica}"


@dataclass
class MeshLayout:
    """Where every part of one running mesh listens: each replica of a service (an
    instance) has its own service socket, sidecar and metrics port."""

    home: Path
    services: tuple[str, ...]
    replicas: int
    edge_port: int
    inbound_ports: dict[str, int]  # by instance
    admin_ports: dict[str, int]  # by Envoy: sidecar-<instance>, edge
    metrics_ports: dict[str, int]  # each instance's Prometheus scrape endpoint
    jwks_port: int  # the JWKS endpoint the edge fetches token keys from
    run_dir: Path

    @classmethod
    def allocate(
        cls, home: Path, services: Sequence[str], edge_port: int, replicas: int = 1
    ) -> MeshLayout:
        instances = [instance_name(s, r) for s in services for r in range(replicas)]
        run_dir = home / "mesh" / "run"
        longest = run_dir / f"{max(instances, key=len)}-outbound.sock"
        if len(str(longest.resolve())) > SOCKET_PATH_LIMIT:
            run_dir = Path(tempfile.mkdtemp(prefix="telemesh-run-"))
        return cls(
            home=home,
            services=tuple(services),
            replicas=replicas,
            edge_port=edge_port or free_port(),
            inbound_ports={name: free_port() for name in instances},
            admin_ports={name: free_port() for name in (*map(sidecar_name, instances), EDGE)},
            metrics_ports={name: free_port() for name in instances},
            jwks_port=free_port(),
            run_dir=run_dir.resolve(),
        )

    def instances(self, service: str) -> list[str]:
        return [instance_name(service, replica) for replica in range(self.replicas)]

    def replica_ports(self) -> dict[str, list[int]]:
        """Every replica's sidecar inbound port, by service (what a cluster balances)."""
        return {
            service: [self.inbound_ports[name] for name in self.instances(service)]
            for service in self.services
        }

    def service_socket(self, instance: str) -> Path:
        return self.run_dir / f"{instance}.sock"

    def outbound_socket(self, instance: str) -> Path:
        return self.run_dir / f"{instance}-outbound.sock"

    def inbound_address(self, instance: str) -> str:
        return f"{envoy_config.HOST}:{self.inbound_ports[instance]}"


def service_of(instance: str, services: Sequence[str]) -> str:
    """The service an instance is a replica of."""
    return next(s for s in services if instance == s or instance.startswith(f"{s}-"))


def _service_module(service: str) -> str:
    return f"svc_{service}"


@dataclass
class LocalMesh:
    """Builds, starts and stops one local mesh in `home`."""

    home: Path
    runtime: RuntimeSettings
    settings: MeshSettings
    services: Sequence[str] = SERVICES
    templates: Mapping[str, Any] | None = None
    service_module: Callable[[str], str] = _service_module  # run as `python -m`
    service_env: Mapping[str, str] = field(default_factory=dict)
    trace_receiver: TraceReceiver | None = None
    on_rotation: Callable[[list[str]], None] | None = None
    # Replicas of every service, each with its own sidecar (as a pod has); more than one
    # needs a database every replica shares (`databases`: PostgreSQL, by service).
    replicas: int = 1
    databases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = self.home.resolve()
        if self.templates is None:
            self.templates = load_templates()
        if self.replicas < 1:
            raise ValueError("replicas: at least 1")
        self.layout = MeshLayout.allocate(
            self.home, self.services, self.settings.edge_port, self.replicas
        )
        self.logs_dir = self.home / "mesh" / "logs"
        self.config_dir = self.home / "mesh" / "envoy"
        self.ca = LocalCA.load_or_create(ca_folder(self.home), self.runtime.trust_domain)
        self.rotator = IdentityRotator(
            self.ca, self._workloads(), dt.timedelta(seconds=self.settings.cert_ttl_seconds)
        )
        self.service_processes: dict[str, ManagedProcess] = {}
        self.envoys: dict[str, ManagedProcess] = {}
        self._stop_rotation = threading.Event()
        self._rotation: threading.Thread | None = None
        self.jwks_endpoint = JwksEndpoint(self.runtime.jwks_path().resolve(), self.layout.jwks_port)

    # --- identities and configs -------------------------------------------------------

    def spiffe_id(self, workload: str) -> str:
        return spiffe_id(self.runtime.trust_domain, self.runtime.namespace, workload)

    def _workloads(self) -> list[Workload]:
        workloads = [
            Workload(name, self.spiffe_id(name), identity_folder(self.home, sidecar_name(name)))
            for name in self.services
        ]
        # Browsers reach the edge by name: its certificate also carries localhost.
        workloads.append(
            Workload(
                EDGE,
                self.spiffe_id(EDGE),
                identity_folder(self.home, EDGE),
                dns_names=("localhost",),
                ip_addresses=("127.0.0.1",),
            )
        )
        return workloads

    def identity_dir(self, envoy_name: str) -> Path:
        """An Envoy's workload identity: the edge's, or its service's (every replica's
        sidecar carries the service's identity, as pods share a service account)."""
        if envoy_name == EDGE:
            return identity_folder(self.home, EDGE)
        instance = envoy_name.removeprefix("sidecar-")
        return identity_folder(self.home, sidecar_name(service_of(instance, self.services)))

    def envoy_values(self, envoy_name: str) -> dict[str, str | int]:
        """What fills the placeholders of Envoy config `envoy_name` (`edge` or
        `sidecar-<instance>`)."""
        layout = self.layout
        values: dict[str, str | int] = {
            "ADMIN_PORT": layout.admin_ports[envoy_name],
            "CA_BUNDLE": str(self.ca.bundle_path),
            "IDENTITY_DIR": str(self.identity_dir(envoy_name)),
            "TRUST_DOMAIN": self.runtime.trust_domain,
            "NAMESPACE": self.runtime.namespace,
            "EDGE_PORT": layout.edge_port,
            "JWKS_PORT": layout.jwks_port,
            "JWKS_CACHE_DURATION": f"{self.runtime.jwks_refresh_seconds:g}s",
        }
        for service in self.services:
            values[f"{service.upper()}_INBOUND_PORT"] = layout.inbound_ports[service]
        if envoy_name != EDGE:
            instance = envoy_name.removeprefix("sidecar-")
            service = service_of(instance, self.services)
            # Its own inbound listener (clusters to peers list every replica instead).
            values[f"{service.upper()}_INBOUND_PORT"] = layout.inbound_ports[instance]
            values["SERVICE_SOCKET"] = str(layout.service_socket(instance))
            values["OUTBOUND_SOCKET"] = str(layout.outbound_socket(instance))
        if self.trace_receiver is not None:
            values["OTLP_HOST"] = self.trace_receiver.host
            values["OTLP_PORT"] = self.trace_receiver.port
        return values

    def envoy_config(self, envoy_name: str) -> Any:
        assert self.templates is not None
        template_name = envoy_name
        if envoy_name != EDGE:
            instance = envoy_name.removeprefix("sidecar-")
            template_name = sidecar_name(service_of(instance, self.services))
        template = self.templates[template_name]
        if self.trace_receiver is None:
            template = envoy_config.without_tracing(template)
        config = envoy_config.materialize(template, self.envoy_values(envoy_name))
        return envoy_config.with_replicas(config, self.layout.replica_ports())

    def instances(self) -> list[str]:
        """Every replica of every service, the first replicas first."""
        return [
            instance_name(service, replica)
            for replica in range(self.replicas)
            for service in self.services
        ]

    def prepare(self) -> None:
        """Issues identities, makes sure the token issuer exists, writes Envoy configs."""
        self.layout.run_dir.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        if self.runtime.dev_issuer:
            DevIssuer(self.home)  # the edge verifies tokens against its JWKS
        self.jwks_endpoint.start()
        self.rotator.issue_all()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMESH_")}
        for name in (*map(sidecar_name, self.instances()), EDGE):
            path = self.config_dir / f"{name}.yaml"
            path.write_text(yaml.safe_dump(self.envoy_config(name), sort_keys=False))
            self.envoys[name] = envoy_process(
                name,
                path,
                self.layout.admin_ports[name],
                self.logs_dir / f"{name}.log",
                base_env,
                self.settings.envoy_log_level,
                self.settings.envoy_concurrency,
                new_session=True,
            )
        for instance in self.instances():
            service = service_of(instance, self.services)
            self.service_processes[instance] = module_process(
                f"svc_{instance}",
                self.service_module(service),
                self.service_environment(instance),
                self.logs_dir / f"{instance}.log",
                f"unix:{self.layout.service_socket(instance)}",
                cwd=REPO,
                new_session=True,
            )

    def service_environment(self, instance: str) -> dict[str, str]:
        """The environment of one replica (`instance`: `session`, `session-1`, ...)."""
        service = service_of(instance, self.services)
        env = {k: v for k, v in os.environ.items() if k not in _MESH_OWNED}
        if service in self.databases:
            env["TELEMESH_DATABASE_URL"] = self.databases[service]
        env.update(
            TELEMESH_HOME=str(self.home),
            TELEMESH_LISTEN=f"unix:{self.layout.service_socket(instance)}",
            # Identity comes from mTLS: the sidecar forwards the verified caller.
            TELEMESH_SERVICE_TOKENS="0",
            TELEMESH_TRUST_FORWARDED_IDENTITY="1",
            TELEMESH_TRUST_DOMAIN=self.runtime.trust_domain,
            TELEMESH_NAMESPACE=self.runtime.namespace,
            PYTHONUNBUFFERED="1",
        )
        for peer in SERVICES:
            env[f"TELEMESH_{peer.upper()}_ADDR"] = f"unix:{self.layout.outbound_socket(instance)}"
        if self.trace_receiver is not None:
            # The local receiver keeps traces; metrics are scraped (TELEMESH_METRICS_PORT).
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.trace_receiver.otlp_endpoint
            env["OTEL_METRICS_EXPORTER"] = "none"
        env["TELEMESH_METRICS_PORT"] = str(self.layout.metrics_ports[instance])
        # Every end of a call is on this machine: the pre-call echo peer may check loopback
        # candidates (off in production; the caller's environment can still say 0).
        env.setdefault("TELEMESH_SIGNALING_PRECALL_ALLOW_LOOPBACK", "1")
        env.update(self.service_env)
        return env

    # --- running ----------------------------------------------------------------------

    def all_processes(self) -> list[ManagedProcess]:
        """In start order: receiver, Envoys (sidecars and edge), services."""
        receiver = [self.trace_receiver.process] if self.trace_receiver else []
        return [*receiver, *self.envoys.values(), *self.service_processes.values()]

    def start(self, timeout: float = 90.0) -> None:
        """Starts everything and waits until all of it is healthy; stops all on failure.

        The Envoys come first: a service that calls a peer as it starts (the consent
        watch) finds its sidecar's outbound socket already there.
        """
        try:
            self.prepare()
            if self.trace_receiver is not None:
                self.trace_receiver.process.start().wait_ready(timeout)
            # The first replicas before the others: each creates what its service keeps
            # in TELEMESH_HOME (keys) and migrates its database once, before any other
            # replica reads them.
            first = [self.service_processes[service] for service in self.services]
            others = [p for p in self.service_processes.values() if p not in first]
            for group in (list(self.envoys.values()), first, others):
                for process in group:
                    process.start()
                for process in group:
                    process.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self._rotation = threading.Thread(
            target=self._rotate_loop, name="cert-rotation", daemon=True
        )
        self._rotation.start()

    def _rotate_loop(self) -> None:
        while not self._stop_rotation.wait(1.0):
            renewed = self.rotator.rotate_due()
            if renewed and self.on_rotation is not None:
                self.on_rotation(renewed)

    def restart_exited_replicas(self) -> list[str]:
        """With more than one replica, a service replica that died is started again
        (as Kubernetes restarts a container) while the others carry its calls; its
        sidecar stays. Returns the names restarted."""
        if self.replicas < 2:
            return []
        restarted = []
        for instance, process in self.service_processes.items():
            if process.process is not None and not process.running:
                process.start()
                restarted.append(instance)
        return restarted

    def exited(self) -> list[str]:
        """Names of the processes that have stopped on their own."""
        return [p.name for p in self.all_processes() if p.process is not None and not p.running]

    def stop(self) -> None:
        """Stops the edge (no new user calls), then the services (they drain, still able
        to reach their peers), then the sidecars, then the receiver."""
        self._stop_rotation.set()
        groups = [
            [self.envoys[EDGE]] if EDGE in self.envoys else [],
            list(self.service_processes.values()),
            [p for name, p in self.envoys.items() if name != EDGE],
            [self.trace_receiver.process] if self.trace_receiver else [],
        ]
        for group in groups:
            stop_all(group)  # all of a group drain at once
        self.jwks_endpoint.stop()

    def _instance_endpoints(self, instance: str) -> dict[str, Any]:
        layout = self.layout
        service = service_of(instance, self.services)
        process = self.service_processes.get(instance)
        return {
            "socket": f"unix:{layout.service_socket(instance)}",
            "inbound": layout.inbound_address(instance),
            "outbound": f"unix:{layout.outbound_socket(instance)}",
            "sidecar_admin": (
                f"http://{envoy_config.HOST}:{layout.admin_ports[sidecar_name(instance)]}"
            ),
            "spiffe_id": self.spiffe_id(service),
            "identity_dir": str(self.identity_dir(sidecar_name(instance))),
            "metrics": f"http://127.0.0.1:{layout.metrics_ports[instance]}/metrics",
            "pid": process.pid if process is not None and process.process is not None else None,
        }

    def endpoints(self) -> dict[str, Any]:
        """Where everything is, for people and tools (`$TELEMESH_HOME/endpoints.json`)."""
        layout = self.layout
        return {
            "edge": {
                "url": f"https://localhost:{layout.edge_port}",
                "address": f"{envoy_config.HOST}:{layout.edge_port}",
                "admin": f"http://{envoy_config.HOST}:{layout.admin_ports[EDGE]}",
                "spiffe_id": self.spiffe_id(EDGE),
            },
            "ca_bundle": str(self.ca.bundle_path),
            "jwks": str(self.runtime.jwks_path().resolve()),
            "jwks_url": self.jwks_endpoint.url,
            "services": {
                service: {
                    **self._instance_endpoints(service),
                    "replicas": [
                        {"name": instance, **self._instance_endpoints(instance)}
                        for instance in layout.instances(service)
                    ],
                }
                for service in self.services
            },
            "trace_receiver": self.trace_receiver.otlp_endpoint if self.trace_receiver else None,
            "processes": {p.name: p.pid for p in self.all_processes() if p.process is not None},
            "logs": str(self.logs_dir),
        }
