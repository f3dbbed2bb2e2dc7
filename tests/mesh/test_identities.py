"""The local CA's workload identities and their renewal (no Envoy needed here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from telemesh_tools.mesh.ca import LocalCA, spiffe_id
from telemesh_tools.mesh.identities import (
    SECRET_FILE,
    IdentityRotator,
    Workload,
    read_certificate,
)

TTL = dt.timedelta(hours=1)


def test_a_workload_certificate_carries_its_spiffe_id_and_chains_to_the_ca(
    tmp_path: Path,
) -> None:
    ca = LocalCA.load_or_create(tmp_path / "ca", "telemesh.local")
    identity = ca.issue(spiffe_id("telemesh.local", "telemesh", "consent"), TTL, ("localhost",))
    certificate = x509.load_pem_x509_certificate(identity.certificate_pem)
    certificate.verify_directly_issued_by(ca.certificate)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://telemesh.local/ns/telemesh/sa/consent"
    ]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certificate.not_valid_after_utc - identity.issued_at < TTL + dt.timedelta(seconds=1)
    # The CA is made once and then reused by every process of the stack.
    again = LocalCA.load_or_create(tmp_path / "ca", "telemesh.local")
    assert again.certificate == ca.certificate


def test_identities_are_renewed_at_half_their_life(tmp_path: Path) -> None:
    ca = LocalCA.load_or_create(tmp_path / "ca", "telemesh.local")
    workloads = [
        Workload(name, spiffe_id("telemesh.local", "telemesh", name), tmp_path / name)
        for name in ("session", "edge")
    ]
    rotator = IdentityRotator(ca, workloads, TTL)
    issued = rotator.issue_all()
    first = {name: identity.serial_number for name, identity in issued.items()}
    assert {name: read_certificate(tmp_path / name).serial_number for name in first} == first
    document = yaml.safe_load((tmp_path / "session" / SECRET_FILE).read_text())
    assert document["resources"][0]["name"] == "identity"
    start = issued["session"].issued_at
    assert rotator.rotate_due(start + TTL * 0.4) == []
    assert sorted(rotator.rotate_due(start + TTL * 0.6)) == ["edge", "session"]
    renewed = {name: read_certificate(tmp_path / name).serial_number for name in first}
    assert all(renewed[name] != first[name] for name in first)
