"""The local certificate authority: SPIFFE X.509 identities for the mesh on one machine.

On Kubernetes Istio issues the workloads' certificates; locally this small CA does the
same job. Its key and certificate live in `$TELEMESH_HOME/ca/` (created once, atomically,
so that several processes starting together agree on one CA). Each workload gets a
short-lived EC P-256 certificate whose URI SAN is its SPIFFE id
(`spiffe://<trust-domain>/ns/<namespace>/sa/<service>`), usable both as a TLS server and
as a TLS client.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from telemesh.file_modes import private_folder, write_private

CA_KEY_FILE = "ca-key.pem"
CA_CERT_FILE = "ca.pem"
CA_LIFETIME = dt.timedelta(days=3650)
# Certificates start a little in the past: clocks of the processes that check them may lag.
CLOCK_SKEW = dt.timedelta(minutes=5)


def spiffe_id(trust_domain: str, namespace: str, service: str) -> str:
    """The SPIFFE id of a workload, as Istio spells it."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service}"


def ca_folder(home: Path) -> Path:
    return home / "ca"


@dataclass(frozen=True)
class IssuedIdentity:
    """A workload's certificate and private key, PEM-encoded."""

    spiffe_id: str
    certificate_pem: bytes
    private_key_pem: bytes
    issued_at: dt.datetime
    not_before: dt.datetime
    not_after: dt.datetime
    serial_number: int

    def renew_at(self) -> dt.datetime:
        """When to replace it: halfway through its life, as Istio does."""
        return self.issued_at + (self.not_after - self.issued_at) / 2


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalCA:
    """A self-signed CA that signs workload identities for one trust domain."""

    def __init__(
        self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate, folder: Path
    ) -> None:
        self._key = key
        self.certificate = certificate
        self.folder = folder

    @property
    def bundle_path(self) -> Path:
        """The CA certificate that peers trust (PEM)."""
        return self.folder / CA_CERT_FILE

    @classmethod
    def create(
        cls, name: str, trust_domain: str
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A new CA key and self-signed certificate (not saved)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return key, certificate

    @classmethod
    def load_or_create(cls, folder: Path, trust_domain: str) -> LocalCA:
        """Loads the CA in `folder`, creating it first when missing.

        Several processes may start at once: each builds a candidate in a temporary
        folder and renames it into place; the first rename wins and the rest load it.
        """
        folder = folder.resolve()
        if not (folder / CA_CERT_FILE).exists():
            private_folder(folder.parent)
            candidate = Path(tempfile.mkdtemp(prefix=".ca-", dir=folder.parent))
            key, certificate = cls.create("Telemesh local CA", trust_domain)
            write_private(candidate / CA_KEY_FILE, _pem_key(key))
            write_private(
                candidate / CA_CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM)
            )
            try:
                os.rename(candidate, folder)
            except OSError:
                shutil.rmtree(candidate, ignore_errors=True)
        loaded = serialization.load_pem_private_key((folder / CA_KEY_FILE).read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{folder / CA_KEY_FILE} is not an EC private key")
        saved = x509.load_pem_x509_certificate((folder / CA_CERT_FILE).read_bytes())
        return cls(loaded, saved, folder)

    def issue(
        self,
        identity: str,
        ttl: dt.timedelta,
        dns_names: Sequence[str] = (),
        ip_addresses: Sequence[str] = (),
    ) -> IssuedIdentity:
        """A new key and certificate for SPIFFE id `identity`, valid for `ttl`.

        `dns_names` and `ip_addresses` are added for workloads that browsers or other
        non-mesh clients reach by name (the edge).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_before = now - CLOCK_SKEW
        not_after = now + ttl
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(identity)]
        names += [x509.DNSName(name) for name in dns_names]
        names += [x509.IPAddress(ipaddress.ip_address(address)) for address in ip_addresses]
        serial = x509.random_serial_number()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, identity.split("/")[2])])
            )
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
            .sign(self._key, hashes.SHA256())
        )
        return IssuedIdentity(
            spiffe_id=identity,
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
            private_key_pem=_pem_key(key),
            issued_at=now,
            not_before=not_before,
            not_after=not_after,
            serial_number=serial,
        )
