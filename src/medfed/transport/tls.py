"""gRPC credentials for mutual TLS, and the peer certificate of an incoming call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one party: its certificate and key, and the CA certificate it trusts."""

    certificate: Path
    private_key: Path
    ca_certificate: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        """``(certificate, private_key, ca_certificate)`` bytes."""
        return self.certificate.read_bytes(), self.private_key.read_bytes(), self.ca_certificate.read_bytes()


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require every client to present a certificate signed by the CA."""
    certificate, key, ca = files.read()
    return grpc.ssl_server_credentials([(key, certificate)], root_certificates=ca, require_client_auth=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials: trust only the project CA and present the site's certificate."""
    certificate, key, ca = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=certificate)


def peer_certificate(context: grpc.ServicerContext) -> bytes | None:
    """The PEM certificate the caller presented during the TLS handshake, or ``None``."""
    values = context.auth_context().get("x509_pem_cert") or []
    return bytes(values[0]) if values else None
