"""X.509 certificates and keys (ECDSA P-256, SHA-256) as pure functions over ``cryptography``."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from medfed.files import atomic_write
from medfed.provision.errors import ProvisionError

Role = Literal["server", "client"]


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def create_ca(name: str, *, days: int) -> Identity:
    """A self-signed certificate authority for the project ``name``, valid ``days`` days."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} medfed CA")])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(certificate, key)


def issue(
    ca: Identity,
    common_name: str,
    *,
    role: Role,
    days: int,
    hosts: Sequence[str] = (),
    not_before: dt.datetime | None = None,
) -> Identity:
    """A certificate for ``common_name`` signed by ``ca``.

    Args:
        ca: The issuing authority.
        common_name: The subject's CN: the site name for clients.
        role: ``"server"`` (TLS server auth, with ``hosts`` as subject alternative names) or
            ``"client"``: a site, TLS client auth towards the server and, for peer-to-peer
            deployment, TLS server auth towards its peers under its own name only (its common
            name as the one DNS subject alternative name; ``hosts`` is ignored).
        days: Validity in days from ``not_before``.
        hosts: DNS names or IP addresses of a server.
        not_before: Start of validity (default: now); tests use past dates for expired certs.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - dt.timedelta(minutes=5)
    if role == "server":
        usages = [ExtendedKeyUsageOID.SERVER_AUTH]
        names = [_san(host) for host in hosts]
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
        names = [x509.DNSName(common_name)]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Identity(builder.sign(ca.key, hashes.SHA256()), key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    """PEM bytes of ``certificate``."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def write_identity(identity: Identity, certificate_path: Path, key_path: Path) -> None:
    """Writes the certificate (mode 0644) and the unencrypted key (mode 0600, never wider)."""
    key = identity.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_file(key_path, key, mode=0o600)
    write_file(certificate_path, certificate_pem(identity.certificate), mode=0o644)


def write_file(path: Path, data: bytes, *, mode: int) -> None:
    """Writes ``data`` atomically with permission bits ``mode`` from the start."""
    atomic_write(path, data, mode=mode)


def read_identity(certificate_path: Path, key_path: Path) -> Identity:
    """Reads a certificate and its key; raises ``ProvisionError`` when either is unusable."""
    try:
        certificate = read_certificate(certificate_path)
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise ProvisionError(f"cannot read '{key_path}': {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ProvisionError(f"'{key_path}' is not an EC private key")
    return Identity(certificate, key)


def read_certificate(path: Path) -> x509.Certificate:
    """Reads a PEM certificate; raises ``ProvisionError`` when it is unusable."""
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise ProvisionError(f"cannot read certificate '{path}': {error}") from None
