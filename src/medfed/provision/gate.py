"""The server's certificate check: issued by the project CA, in date, not revoked; the CN names
the site. TLS already verified the chain; this is the application-level second look, and the
only place the CRL is enforced (gRPC Python cannot load CRLs)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from medfed.provision.certs import read_certificate
from medfed.provision.errors import ProvisionError
from medfed.transport.errors import AuthenticationError


class CertificateGate:
    """Maps a client certificate to its site name, refusing anything doubtful.

    The CRL is re-read whenever its file changes, so ``medfed revoke`` takes effect on a running
    server. An unreadable or wrongly signed CRL refuses every caller (fail closed).

    Args:
        ca_certificate: The project CA certificate.
        crl: The CRL file (must exist).
    """

    def __init__(self, ca_certificate: Path, crl: Path) -> None:
        self.ca = read_certificate(ca_certificate)
        self.crl_path = Path(crl)
        if not self.crl_path.is_file():
            raise ProvisionError(f"CRL '{crl}' is missing; re-run medfed provision")
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._revoked: frozenset[int] = frozenset()

    def __call__(self, pem: bytes) -> str:
        """The site name in ``pem``'s CN; raises ``AuthenticationError`` to refuse it."""
        certificate = certified(pem, self.ca)
        if certificate.serial_number in self._revoked_serials():
            raise AuthenticationError(f"certificate {certificate.serial_number:x} is revoked")
        return common_name(certificate)

    def _revoked_serials(self) -> frozenset[int]:
        with self._lock:
            try:
                status = self.crl_path.stat()
                stamp = (status.st_mtime_ns, status.st_size)
                if stamp != self._stamp:
                    crl = x509.load_pem_x509_crl(self.crl_path.read_bytes())
                    if not crl.is_signature_valid(self.ca.public_key()):  # type: ignore[arg-type]
                        raise ValueError("CRL not signed by the project CA")
                    self._revoked = frozenset(entry.serial_number for entry in crl)
                    self._stamp = stamp
            except (OSError, ValueError) as error:
                self._stamp = None
                raise AuthenticationError(f"revocation list unusable, refusing all: {error}") from None
            return self._revoked


def certified(pem: bytes, ca: x509.Certificate, *, client: bool = False) -> x509.Certificate:
    """``pem`` as a certificate issued by ``ca`` and in date (and for a site, when ``client``).

    Raises:
        AuthenticationError: It is not, or it does not carry exactly one common name.
    """
    try:
        certificate = x509.load_pem_x509_certificate(pem)
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise AuthenticationError("certificate not issued by the project CA") from None
    now = dt.datetime.now(dt.UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise AuthenticationError("certificate expired or not yet valid")
    if client:
        try:
            usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = x509.ExtendedKeyUsage([])
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            raise AuthenticationError("certificate is not a site (client) certificate")
    common_name(certificate)
    return certificate


def common_name(certificate: x509.Certificate) -> str:
    """The certificate's one common name; ``AuthenticationError`` if it has none or several."""
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise AuthenticationError("certificate must carry exactly one common name")
    return str(names[0].value)
