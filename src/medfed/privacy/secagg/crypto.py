"""The cryptographic primitives of secure aggregation, all from ``cryptography``.

Bonawitz et al. 2017 (CCS'17), section 3: key agreement ``KA`` (X25519), key derivation
(HKDF-SHA256), authenticated encryption ``AE`` (AES-256-GCM) and a pseudo-random generator
``PRG`` (the AES-256-CTR keystream). Every derived key is bound to the session id, so a key,
a ciphertext or a mask from one aggregation is useless in another.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from medfed.privacy.secagg.errors import SecureAggregationError

KEY_BYTES = 32
"""Bytes of an X25519 key, a derived symmetric key and a self-mask seed."""

NONCE_BYTES = 12
"""Bytes of an AES-GCM nonce."""

SHARE_KEY_INFO = b"medfed/secagg/v1/share-encryption"
MASK_KEY_INFO = b"medfed/secagg/v1/pairwise-mask"


def generate_private_key() -> X25519PrivateKey:
    """A fresh X25519 private key from the operating system's random source."""
    return X25519PrivateKey.generate()


def private_key_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key`` (what is Shamir-shared for the mask key ``s_u``)."""
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def public_key_bytes(key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``key``'s public key."""
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agree(private: X25519PrivateKey, peer_public: bytes, *, session: bytes, info: bytes) -> bytes:
    """``HKDF(X25519(private, peer_public))``: a 32-byte key both peers derive alike.

    Args:
        private: This party's private key.
        peer_public: The peer's raw public key (32 bytes).
        session: The aggregation's session id, used as the HKDF salt.
        info: What the key is for (``SHARE_KEY_INFO`` or ``MASK_KEY_INFO``).

    Raises:
        SecureAggregationError: If ``peer_public`` is not a valid X25519 public key.
    """
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as error:
        raise SecureAggregationError(f"invalid peer public key: {error}") from error
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=session, info=info)
    return hkdf.derive(shared)


def seal(key: bytes, plaintext: bytes, associated: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM encryption of ``plaintext``; returns ``(nonce, ciphertext_with_tag)``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, associated: bytes) -> bytes:
    """Decrypts what ``seal`` produced.

    Raises:
        SecureAggregationError: If the ciphertext, nonce or associated data were altered or the
            key is wrong (the AES-GCM tag does not verify).
    """
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated)
    except InvalidTag as error:
        raise SecureAggregationError("an encrypted share failed authentication") from error


def prg(seed: bytes, length: int, dtype: np.dtype) -> np.ndarray:
    """``length`` pseudo-random ring elements: the AES-256-CTR keystream of ``seed``.

    Each seed is used for one stream only (seeds are fresh per session), so the all-zero
    counter block is safe.

    Args:
        seed: A 32-byte key.
        length: Number of elements.
        dtype: An unsigned integer dtype (``uint32`` or ``uint64``); fixes the ring.

    Returns:
        Shape ``(length,)``, uniformly distributed over the ring if AES is a PRF.
    """
    if len(seed) != KEY_BYTES:
        raise ValueError(f"a PRG seed has {KEY_BYTES} bytes, got {len(seed)}")
    dtype = np.dtype(dtype)
    out = bytearray(length * dtype.itemsize + 15)  # update_into wants block-size slack
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    encryptor.update_into(bytes(length * dtype.itemsize), out)
    stream = np.frombuffer(out, dtype=dtype.newbyteorder("<"), count=length)
    return stream.astype(dtype, copy=False)


def commit(session: bytes, secret: bytes) -> bytes:
    """SHA-256 commitment to a uniformly random ``secret`` (hiding because ``secret`` is)."""
    return hashlib.sha256(b"medfed/secagg/v1/commit" + session + secret).digest()
