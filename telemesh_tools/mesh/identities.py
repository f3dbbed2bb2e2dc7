"""Workload identities on disk, as Envoy file-based SDS secrets, and their rotation.

Each workload (a service's sidecar, the edge) has a folder with one SDS file,
`identity.yaml`, holding its certificate and key inline. Envoy watches the folder
(`watched_directory`) and serves a new certificate as soon as the file is replaced; the
replacement is an atomic rename, so Envoy never reads half a file. Nothing restarts.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509

from telemesh_tools.mesh.ca import IssuedIdentity, LocalCA

SECRET_FILE = "identity.yaml"
# The name Envoy configs use for a workload's own certificate secret.
SECRET_NAME = "identity"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


def identity_folder(home: Path, workload: str) -> Path:
    return home / "mesh" / "identities" / workload


def sds_document(identity: IssuedIdentity) -> dict[str, object]:
    """The SDS discovery document with one TLS certificate secret."""
    return {
        "resources": [
            {
                "@type": SECRET_TYPE,
                "name": SECRET_NAME,
                "tls_certificate": {
                    "certificate_chain": {"inline_string": identity.certificate_pem.decode()},
                    "private_key": {"inline_string": identity.private_key_pem.decode()},
                },
            }
        ]
    }


def write_identity(folder: Path, identity: IssuedIdentity) -> Path:
    """Replaces the workload's SDS file atomically; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SECRET_FILE
    descriptor, temporary = tempfile.mkstemp(prefix=".identity-", dir=folder)
    try:
        with os.fdopen(descriptor, "w") as handle:
            yaml.safe_dump(sds_document(identity), handle, sort_keys=False)
        os.chmod(temporary, 0o600)  # it holds the private key
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_certificate(folder: Path) -> x509.Certificate:
    """The certificate currently in a workload's SDS file."""
    document = yaml.safe_load((folder / SECRET_FILE).read_text())
    chain = document["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"]
    return x509.load_pem_x509_certificate(chain.encode())


@dataclass(frozen=True)
class Workload:
    """One holder of an identity: its folder, SPIFFE id and extra names."""

    name: str
    spiffe_id: str
    folder: Path
    dns_names: Sequence[str] = ()
    ip_addresses: Sequence[str] = ()


class IdentityRotator:
    """Issues every workload's certificate and renews each one at half its life."""

    def __init__(self, ca: LocalCA, workloads: Sequence[Workload], ttl: dt.timedelta) -> None:
        self.ca = ca
        self.workloads = {workload.name: workload for workload in workloads}
        self.ttl = ttl
        self.current: dict[str, IssuedIdentity] = {}

    def issue(self, name: str) -> IssuedIdentity:
        workload = self.workloads[name]
        identity = self.ca.issue(
            workload.spiffe_id, self.ttl, workload.dns_names, workload.ip_addresses
        )
        write_identity(workload.folder, identity)
        self.current[name] = identity
        return identity

    def issue_all(self) -> Mapping[str, IssuedIdentity]:
        for name in self.workloads:
            self.issue(name)
        return self.current

    def rotate_due(self, now: dt.datetime | None = None) -> list[str]:
        """Renews the certificates past half their life; returns whose were renewed."""
        moment = now or dt.datetime.now(dt.UTC)
        renewed = []
        for name in self.workloads:
            identity = self.current.get(name)
            if identity is None or identity.renew_at() <= moment:
                self.issue(name)
                renewed.append(name)
        return renewed
