"""Encrypted aggregation with CKKS homomorphic encryption (through TenSEAL).

Cheon, Kim, Kim and Song, "Homomorphic Encryption for Arithmetic of Approximate Numbers",
ASIACRYPT 2017; Benaissa et al., "TenSEAL: A Library for Encrypted Tensor Operations Using
Homomorphic Encryption", ICLR 2021 workshop on distributed and private ML.

The sites share one secret-key context (provisioning ships it to the sites only). Each site
encrypts ``[n_u * flatten(x_u), n_u]``, chunked to the slot count; the server holds a context
with the encryption parameters and no keys at all, so it can add ciphertexts but neither
decrypt nor encrypt; a site decrypts the sum and divides by the summed weight. CKKS is
approximate: with the default parameters the decrypted sum is within about 3e-8 plus 3e-15 of
its magnitude of the true sum. It is only right while the encoded sum fits the coefficient
modulus, so each site's values are bounded (``CkksParameters.max_abs``, 2^47 ~ 1.4e14 by
default) and a sum adds at most ``max_summands`` uploads; beyond that CKKS would wrap silently.
Unlike secure aggregation, a site that drops out costs nothing, but every site holds the
key that decrypts every other site's update: the server must never forward one site's
ciphertext to another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tenseal as ts

from medfed.errors import MedfedError
from medfed.privacy.secagg.vectors import Layout, mean_of_weighted_sum, size_of, weighted_vector
from medfed.types import SCHEMA_VERSION, Weights


class EncryptionError(MedfedError):
    """A CKKS context or ciphertext is used where it must not be (e.g. a secret key at the
    server), or a ciphertext does not match its context."""


@dataclass(frozen=True)
class CkksParameters:
    """CKKS encryption parameters (128-bit security for the defaults, per the HE standard).

    Attributes:
        poly_modulus_degree: Ring dimension ``N``; a ciphertext holds ``N / 2`` slots.
        coeff_mod_bit_sizes: Bit sizes of the coefficient-modulus primes; only additions are
            done, so one middle prime suffices.
        scale_bits: ``log2`` of the encoding scale (precision about ``2^-(scale_bits - 20)``).
        max_summands: Most uploads one encrypted sum may add (sizes ``max_abs``).
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 60)
    scale_bits: int = 40
    max_summands: int = 1024

    def __post_init__(self) -> None:
        if self.max_summands < 1:
            raise ValueError(f"max_summands must be >= 1, got {self.max_summands}")
        if len(self.coeff_mod_bit_sizes) < 2:
            raise ValueError("coeff_mod_bit_sizes needs a data prime and the special prime")
        if not 0 < self.scale_bits < self.sum_bits:
            raise ValueError(f"scale_bits must lie in (0, {self.sum_bits}), got {self.scale_bits}")

    @property
    def sum_bits(self) -> int:
        """``log2`` of the largest ``|sum|`` that decrypts right: ``sum(b - 1) - 1 - scale_bits``
        over the data primes (all but the last, special, prime).

        A prime of ``b`` bits is at least ``2^(b-1)``, so the ciphertext modulus ``q`` is at
        least ``2^sum(b - 1)``; a slot vector ``z`` encodes to coefficients of at most
        ``max|z| * 2^scale_bits``, which must stay below ``q / 2`` (the defaults: 2^57 ~ 1.4e17,
        measured to wrap from about 2^59).
        """
        return sum(bits - 1 for bits in self.coeff_mod_bit_sizes[:-1]) - 1 - self.scale_bits

    @property
    def max_abs(self) -> float:
        """The largest ``|value|`` a site may encrypt: ``2^sum_bits / max_summands``."""
        return 2.0**self.sum_bits / self.max_summands

    @property
    def slots(self) -> int:
        """Values per ciphertext."""
        return self.poly_modulus_degree // 2


DEFAULT_PARAMETERS = CkksParameters()


@dataclass(frozen=True)
class EncryptedVector:
    """A real vector encrypted as CKKS ciphertexts: what a site uploads, what the server sums.

    Attributes:
        length: Number of real values.
        chunks: Serialized ciphertexts of consecutive slices of ``slots`` values.
    """

    length: int
    chunks: tuple[bytes, ...]
    schema_version: int = SCHEMA_VERSION

    @property
    def nbytes(self) -> int:
        """Bytes on the wire (ciphertexts only)."""
        return sum(len(chunk) for chunk in self.chunks)


def create_context(params: CkksParameters = DEFAULT_PARAMETERS) -> ts.Context:
    """A fresh CKKS context with a secret key (for the sites; never for the server)."""
    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    context.global_scale = 2.0**params.scale_bits
    return context


def serialize_context(context: ts.Context, *, include_secret_key: bool) -> bytes:
    """``context`` as bytes: with the secret key for sites, parameters only for the server.

    The server's form holds no key at all (public, relinearisation and Galois keys are left
    out too): additions need none, and without a public key the server cannot even encrypt.
    """
    if include_secret_key:
        require_private(context)
        data: bytes = context.serialize(save_secret_key=True)
        return data
    data = context.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )
    return bytes(data)


def deserialize_context(data: bytes) -> ts.Context:
    """The context ``serialize_context`` wrote; ``EncryptionError`` if ``data`` is not one."""
    try:
        return ts.context_from(data)
    except Exception as error:  # TenSEAL raises bare exceptions of several types
        raise EncryptionError(f"not a serialized TenSEAL context: {error}") from error


def new_key_pair(params: CkksParameters = DEFAULT_PARAMETERS) -> tuple[ts.Context, ts.Context]:
    """A fresh secret-key context for the sites and its keyless copy for the server (as the
    startup kits hold them; ``medfed simulate`` makes one pair per experiment)."""
    sites = create_context(params)
    return sites, deserialize_context(serialize_context(sites, include_secret_key=False))


def load_site_context(path: Path) -> ts.Context:
    """A site's secret-key context from its startup kit (``ckks.ctx``).

    Raises:
        EncryptionError: If ``path`` is missing or unreadable, holds no TenSEAL context, or the
            context lacks the secret key (e.g. the server's ``ckks_public.ctx``).
    """
    context = _read_context(path)
    if not context.is_private():
        raise EncryptionError(f"CKKS context '{path}' lacks the secret key a site needs")
    return context


def load_server_context(path: Path) -> ts.Context:
    """The server's keyless context from its startup kit (``ckks_public.ctx``).

    Raises:
        EncryptionError: If ``path`` is missing or unreadable, holds no TenSEAL context, or the
            context holds the secret key (a site's ``ckks.ctx``: the server must never get it).
    """
    context = _read_context(path)
    if context.is_private():
        raise EncryptionError(
            f"CKKS context '{path}' holds the secret key; the server must only get the keyless "
            "ckks_public.ctx"
        )
    return context


def _read_context(path: Path) -> ts.Context:
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise EncryptionError(f"cannot read CKKS context '{path}': {error.strerror or error}") from None
    try:
        return deserialize_context(data)
    except EncryptionError as error:
        raise EncryptionError(f"'{path}' is {error}") from None


@contextmanager
def _tenseal(action: str) -> Iterator[None]:
    """Turns the bare exceptions TenSEAL raises (``ValueError``, ``RuntimeError``...) into
    ``EncryptionError``."""
    try:
        yield
    except EncryptionError:
        raise
    except Exception as error:  # TenSEAL raises bare exceptions of several types
        raise EncryptionError(f"CKKS {action} failed: {error}") from error


def require_private(context: ts.Context) -> None:
    """Raises ``EncryptionError`` unless ``context`` holds the secret key (site side)."""
    if not context.is_private():
        raise EncryptionError("this operation needs the sites' secret-key context")


def require_public(context: ts.Context) -> None:
    """Raises ``EncryptionError`` if ``context`` holds a secret key (the server must not)."""
    if context.is_private():
        raise EncryptionError(
            "the server was given a context with the secret key; it must only hold "
            "serialize_context(context, include_secret_key=False)"
        )


def encrypt_vector(context: ts.Context, values: np.ndarray, params: CkksParameters) -> EncryptedVector:
    """Encrypts a real vector, shape ``(d,)``, in ``ceil(d / slots)`` ciphertexts.

    Raises:
        EncryptionError: If a value is not finite or ``|value| > params.max_abs`` (a sum of
            ``params.max_summands`` such uploads could wrap and decrypt to garbage).
    """
    require_private(context)
    values = np.asarray(values, dtype=np.float64)
    check_range(values, params)
    with _tenseal("encrypt"):
        chunks = tuple(
            ts.ckks_vector(context, values[start : start + params.slots]).serialize()
            for start in range(0, len(values), params.slots)
        )
    return EncryptedVector(length=len(values), chunks=chunks)


def check_range(values: np.ndarray, params: CkksParameters) -> None:
    """Raises ``EncryptionError`` unless every value is finite with ``|value| <= params.max_abs``."""
    if not np.isfinite(values).all():
        raise EncryptionError("cannot encrypt NaN or infinite values")
    largest = float(np.abs(values).max(initial=0.0))
    if largest > params.max_abs:
        raise EncryptionError(
            f"value {largest:.6g} exceeds the CKKS range {params.max_abs:.6g} (2^{params.sum_bits} "
            f"over at most {params.max_summands} summands, scale 2^{params.scale_bits}): its sum "
            "could wrap the coefficient modulus and decrypt to garbage"
        )


def add_encrypted(
    context: ts.Context, vectors: Sequence[EncryptedVector], params: CkksParameters = DEFAULT_PARAMETERS
) -> EncryptedVector:
    """The server's step: the encrypted sum of ``vectors``, as a running sum.

    Args:
        context: The server's keyless context.
        vectors: The sites' uploads, all of one length.
        params: The context's parameters (bound the number of summands).

    Raises:
        EncryptionError: If ``context`` holds the secret key, ``vectors`` is empty or has more
            than ``params.max_summands`` uploads, the uploads differ in length or chunk count,
            or a chunk is not a ciphertext of ``context``.
    """
    require_public(context)
    if not 1 <= len(vectors) <= params.max_summands:
        raise EncryptionError(
            f"add_encrypted needs 1 to {params.max_summands} encrypted vectors, got {len(vectors)}"
        )
    first = vectors[0]
    if any((v.length, len(v.chunks)) != (first.length, len(first.chunks)) for v in vectors):
        raise EncryptionError("encrypted vectors differ in length")
    with _tenseal("add"):
        sums = [ts.ckks_vector_from(context, chunk) for chunk in first.chunks]
        for vector in vectors[1:]:
            for total, chunk in zip(sums, vector.chunks, strict=True):
                total += ts.ckks_vector_from(context, chunk)
        return EncryptedVector(first.length, tuple(total.serialize() for total in sums))


def decrypt_vector(context: ts.Context, vector: EncryptedVector) -> np.ndarray:
    """The real vector (float64, shape ``(length,)``) that ``vector`` encrypts; sites only."""
    require_private(context)
    with _tenseal("decrypt"):
        parts = [np.asarray(ts.ckks_vector_from(context, c).decrypt()) for c in vector.chunks]
    values = np.concatenate(parts) if parts else np.zeros(0)
    if values.shape != (vector.length,):
        raise EncryptionError(f"decrypted {values.shape[0]} values, expected {vector.length}")
    return values


def encrypt_weighted_update(
    context: ts.Context,
    weights: Weights,
    num_samples: float,
    layout: Layout,
    params: CkksParameters = DEFAULT_PARAMETERS,
    *,
    site: str,
) -> EncryptedVector:
    """A site's upload: ``weighted_vector`` encrypted (``layout``: the global model's).

    Raises:
        EncryptionError: Naming ``site``, if a weighted value is outside ``params.max_abs``.
    """
    try:
        return encrypt_vector(context, weighted_vector(weights, num_samples, layout), params)
    except EncryptionError as error:
        raise EncryptionError(f"site '{site}': {error}") from None


def decrypt_weighted_mean(
    context: ts.Context, total: EncryptedVector, layout: Layout
) -> tuple[Weights, float]:
    """The weighted mean weights and the total weight from the encrypted sum; sites only."""
    if total.length != size_of(layout) + 1:
        raise EncryptionError(f"the sum has {total.length} values, expected {size_of(layout) + 1}")
    return mean_of_weighted_sum(decrypt_vector(context, total), layout, error=EncryptionError)
