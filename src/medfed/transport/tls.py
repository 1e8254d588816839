"""gRPC credentials for mutual TLS, and the peer certificate of an incoming call."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
"""An HTTP/2 client's first bytes (the preface and an empty SETTINGS frame): a server that
accepted the handshake answers with its own SETTINGS frame."""

REFUSED_BY_SERVER = (
    "the server refused this site's certificate in the TLS handshake (revoked, expired, or "
    "issued by another project's CA): ask the project for a new startup kit"
)


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


def probe_tls(target: str, files: TlsFiles, *, server_name: str | None = None, timeout_s: float = 5.0) -> str:
    """Why a mutual-TLS connection to ``target`` (``host:port``) fails, in a sentence for the
    site's operator: server unreachable, server certificate not trusted, or this site's
    certificate refused. gRPC reports all three as "unavailable".

    Args:
        target: The server's ``host:port``.
        files: This site's certificate, key and CA.
        server_name: Name expected in the server's certificate (default: the target's host).
        timeout_s: Bound on the connection and on each read, in seconds.
    """
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_alpn_protocols(["h2"])
    try:
        context.load_verify_locations(cafile=str(files.ca_certificate))
        context.load_cert_chain(str(files.certificate), str(files.private_key))
        with socket.create_connection((host, int(port)), timeout=timeout_s) as raw:
            with context.wrap_socket(raw, server_hostname=server_name or host) as connection:
                connection.sendall(_HTTP2_PREFACE)
                answer = connection.recv(9)
    except ssl.SSLCertVerificationError as error:
        return (
            f"this site does not trust the server's certificate ({error.verify_message}): the "
            f"kit's ca.crt is not the server's CA, or '{server_name or host}' is not the server's name"
        )
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return REFUSED_BY_SERVER
    except (OSError, ValueError) as error:
        return f"server unreachable at {target} ({error})"
    if not answer:
        return REFUSED_BY_SERVER
    return "the server accepts this site's certificate; the call failed for another reason"
