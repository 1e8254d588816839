"""A site's provisioned certificate and key as its secure-aggregation identity.

The site signs its advertised keys with the key of its startup kit and checks every other
participant's signature and certificate: issued by the project CA, in date, a site (client)
certificate, and carrying the name the server's invitation gives that participant. A server
that slipped clients of its own into the aggregation is then refused by every honest site.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.provision.certs import certificate_pem, read_certificate, read_identity
from medfed.provision.gate import CertificateGate, certified, common_name
from medfed.transport.errors import AuthenticationError
from medfed.transport.tls import TlsFiles

_SIGNATURE = ec.ECDSA(hashes.SHA256())


class ProvisionedIdentity:
    """A ``KeyAuthenticator`` from a site's kit (its certificate, key and the project CA).

    Raises:
        ProvisionError: A kit file is missing or unusable.
    """

    def __init__(self, tls: TlsFiles) -> None:
        identity = read_identity(tls.certificate, tls.private_key)
        self._key = identity.key
        self._ca = read_certificate(tls.ca_certificate)
        self._certificate = certificate_pem(identity.certificate)

    @property
    def certificate(self) -> bytes:
        """This site's certificate (PEM)."""
        return self._certificate

    def sign(self, data: bytes) -> bytes:
        """ECDSA (P-256, SHA-256) signature over ``data`` with the site's key."""
        return self._key.sign(data, _SIGNATURE)

    def verify(self, certificate: bytes, name: str, data: bytes, signature: bytes) -> None:
        """Raises ``SecureAggregationError`` unless ``certificate`` is the project's site
        certificate of ``name`` and ``signature`` its signature over ``data``."""
        try:
            issued = certified(certificate, self._ca, client=True)
            holder = common_name(issued)
            if holder != name:
                raise AuthenticationError(f"the certificate names '{holder}'")
            verify_signature(issued, data, signature)
        except AuthenticationError as error:
            raise SecureAggregationError(f"participant '{name}' is not authenticated: {error}") from None


class PeerVerifier:
    """Checks a peer's signed answer (``medfed.transport.peer.Verifier``): the certificate is
    the project's, in date, not revoked (``gate``, which re-reads the CRL when it changes) and
    names the peer, and the signature is its key's.

    Args:
        gate: The project CA and revocation list.
    """

    def __init__(self, gate: CertificateGate) -> None:
        self.gate = gate

    def __call__(self, peer: str, certificate: bytes, data: bytes, signature: bytes) -> None:
        holder = self.gate(certificate)
        if holder != peer:
            raise AuthenticationError(f"the answer of '{peer}' is signed by '{holder}'")
        verify_signature(x509.load_pem_x509_certificate(certificate), data, signature)


def verify_signature(certificate: x509.Certificate, data: bytes, signature: bytes) -> None:
    """Raises ``AuthenticationError`` unless ``signature`` is the ECDSA (P-256, SHA-256)
    signature over ``data`` of ``certificate``'s key."""
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise AuthenticationError("the certificate holds no EC key")
    try:
        public_key.verify(signature, data, _SIGNATURE)
    except (InvalidSignature, ValueError):
        raise AuthenticationError("the signature does not verify") from None
