"""Certificate revocation lists: revoking a site's certificates so that the server refuses them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from medfed.provision.certs import Identity, read_identity, write_file
from medfed.provision.errors import ProvisionError


def write_crl(ca: Identity, serials: Iterable[int], path: Path, *, days: int = 3650) -> None:
    """Writes a CRL signed by ``ca`` listing ``serials`` to ``path``."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
    )
    for serial in sorted(set(serials)):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build()
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca.key, hashes.SHA256())
    write_file(path, crl.public_bytes(serialization.Encoding.PEM), mode=0o644)


def revoke(kits_dir: Path, site: str) -> list[int]:
    """Revokes every certificate issued to ``site``; updates ``ca/crl.pem`` and every kit's
    ``crl.pem`` under ``kits_dir`` (a running server or peer picks the change up on its next
    call; kits already sent away need the new ``ca/crl.pem`` copied in).

    Returns:
        The serial numbers now revoked for ``site``.

    Raises:
        ProvisionError: The CA is missing or no certificate was issued to ``site``.
    """
    ca_dir = Path(kits_dir) / "ca"
    ca = read_identity(ca_dir / "ca.crt", ca_dir / "ca.key")
    issued = json.loads((ca_dir / "issued.json").read_text())
    if site not in issued or site == "server":
        raise ProvisionError(
            f"no certificate was issued to site '{site}'; sites: {sorted(set(issued) - {'server'})}"
        )
    revoked = set(revoked_serials(ca_dir / "crl.pem")) | {int(serial) for serial in issued[site]}
    write_crl(ca, revoked, ca_dir / "crl.pem")
    for kit_crl in Path(kits_dir).glob("*/crl.pem"):
        if kit_crl.parent != ca_dir:
            write_file(kit_crl, (ca_dir / "crl.pem").read_bytes(), mode=0o644)
    return sorted(int(serial) for serial in issued[site])


def revoked_serials(path: Path) -> list[int]:
    """Serial numbers listed in the CRL at ``path``."""
    try:
        crl = x509.load_pem_x509_crl(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        raise ProvisionError(f"cannot read CRL '{path}': {error}") from None
    return [entry.serial_number for entry in crl]
