"""Who may sign ledger entries: each party's Ed25519 public key and revocable serial number.

The signer list is a JSON file next to the ledger (``signers.json``)::

    {"schema_version": 1, "signers": {"hospital_a": {"public_key": "<64 hex>", "serial": 123}}}

A serial listed in the project's certificate revocation list (``medfed revoke``, read with
``medfed.provision.revocation``) revokes the signer. In a simulation every party gets a key for
the run; the private keys stay in the run directory (``keys/``, mode 0600).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medfed.files import atomic_write
from medfed.provenance.entries import Entry, signed_bytes
from medfed.provenance.errors import LedgerError
from medfed.provision.revocation import revoked_serials
from medfed.types import SCHEMA_VERSION


@dataclass(frozen=True)
class Signer:
    """A party allowed to sign: its name, raw Ed25519 public key (32 bytes) and serial."""

    name: str
    public_key: bytes
    serial: int


@dataclass(frozen=True)
class Signers:
    """The known signers by name, and the revoked serial numbers."""

    known: Mapping[str, Signer] = field(default_factory=dict)
    revoked: frozenset[int] = frozenset()

    def check(self, entry: Entry) -> None:
        """Raises ``ValueError`` naming the reason unless ``entry`` carries a valid signature
        of a known, unrevoked signer."""
        signer = self.known.get(entry.signer)
        if signer is None:
            raise ValueError(f"unknown signer '{entry.signer}'")
        if signer.serial in self.revoked:
            raise ValueError(f"signer '{entry.signer}' is revoked (serial {signer.serial})")
        try:
            key = Ed25519PublicKey.from_public_bytes(signer.public_key)
            key.verify(bytes.fromhex(entry.signature), signed_bytes(entry))
        except (InvalidSignature, ValueError):
            raise ValueError(
                f"bad signature: not signed by '{entry.signer}' (the entry was modified or forged)"
            ) from None

    def with_revocation_list(self, crl: Path | None) -> Signers:
        """These signers, with every serial in the CRL at ``crl`` revoked (as is without one)."""
        return self if crl is None else replace(self, revoked=self.revoked | set(revoked_serials(crl)))


def sign(entry: Entry, key: Ed25519PrivateKey) -> Entry:
    """``entry`` with ``key``'s signature."""
    return replace(entry, signature=key.sign(signed_bytes(entry)).hex())


def new_signer(name: str) -> tuple[Ed25519PrivateKey, Signer]:
    """A fresh key pair for ``name`` (from the operating system's CSPRNG), with a random serial."""
    key = Ed25519PrivateKey.generate()
    return key, Signer(name, public_bytes(key), x509.random_serial_number())


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of ``key``."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def save_signers(path: Path, signers: Iterable[Signer]) -> None:
    """Writes the signer list atomically."""
    data = {
        "schema_version": SCHEMA_VERSION,
        "signers": {s.name: {"public_key": s.public_key.hex(), "serial": s.serial} for s in signers},
    }
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True).encode())


def load_signers(path: Path) -> Signers:
    """The signer list at ``path``; raises ``LedgerError`` naming the file when unusable."""
    try:
        data = json.loads(path.read_bytes())
        known = {
            str(name): Signer(str(name), _key_bytes(record["public_key"]), _serial(record["serial"]))
            for name, record in data["signers"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise LedgerError(str(path), None, f"cannot read the signer list: {error}") from None
    return Signers(known)


def save_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Writes ``key`` (PKCS#8 PEM) with mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    atomic_write(path, pem, mode=0o600)


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key at ``path``; raises ``LedgerError`` when unusable."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise LedgerError(str(path), None, f"cannot read the signing key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise LedgerError(str(path), None, "the signing key is not an Ed25519 key")
    return key


def _key_bytes(value: object) -> bytes:
    raw = bytes.fromhex(str(value))
    if len(raw) != 32:
        raise ValueError("a public key must be 32 bytes (64 hex digits)")
    return raw


def _serial(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**160:
        raise ValueError("a serial must be a positive whole number below 2**160")
    return value
