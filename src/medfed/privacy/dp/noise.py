"""Where DP noise and privacy sampling come from: randomness drawn at the party that adds it.

A DP guarantee holds only against an adversary who cannot reproduce the noise. Nothing here is
derived from a value another party knows (the run's seed, the round, the site's name), except
``NoiseMode.REPRODUCIBLE``, which exists for tests and demos and makes a run *not private*.

``SecureNoise`` draws its bits from a ChaCha20 keystream keyed from ``os.urandom`` (the
``cryptography`` package) and makes Gaussians as Opacus's ``secure_mode`` does: each value is
``(g_1 + g_2 + g_3 + g_4) / 2`` of four independent ``N(0, std^2)`` draws (Box-Muller over
53-bit uniforms), computed in float64 and rounded once to the gradient's dtype.
Holohan and Braghin, "Secure Random Sampling in Differential Privacy", ESORICS 2021
(arXiv 2107.10138, section 5.1), show that this raises the cost of the floating-point attack of
Mironov (CCS 2012) and Jin et al. (arXiv 2112.05307) on the Gaussian mechanism from about
``2^53`` to about ``2^159`` guesses; it is a mitigation, not an exact sampler over the floats.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import Protocol

import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from torch.utils.data import Sampler

logger = logging.getLogger(__name__)

NOT_PRIVATE = (
    "reproducible DP noise: anyone who knows the run's seed can regenerate and remove it; "
    "this run is NOT PRIVATE (for tests and demos only)"
)
"""What logs and reports say about a run with ``NoiseMode.REPRODUCIBLE``."""


class NoiseMode(StrEnum):
    """Where a party's DP randomness comes from.

    Attributes:
        SECURE: ``SecureNoise``: a CSPRNG keyed from OS entropy, attack-resistant Gaussians.
        SYSTEM: torch's Mersenne Twister seeded with 64 bits of OS entropy: unknown to every
            other party but neither a CSPRNG nor resistant to floating-point attacks (fast).
        REPRODUCIBLE: torch's generator seeded from the run's seed: replayable, NOT PRIVATE.
    """

    SECURE = "secure"
    SYSTEM = "system"
    REPRODUCIBLE = "reproducible"


class NoiseSource(Protocol):
    """The randomness a DP mechanism consumes."""

    def uniform(self, size: int) -> torch.Tensor:
        """``size`` independent uniforms in ``[0, 1)``, float64 (for Poisson sampling)."""
        ...

    def normal(self, std: float, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Independent ``N(0, std^2)`` values of ``shape`` on the CPU."""
        ...


class GeneratorNoise:
    """Noise from a ``torch.Generator`` (``NoiseMode.SYSTEM`` and ``NoiseMode.REPRODUCIBLE``).

    Args:
        generator: The generator; who can know its seed decides whether the noise is private.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def uniform(self, size: int) -> torch.Tensor:
        """``size`` uniforms in ``[0, 1)`` from the generator."""
        return torch.rand(size, generator=self.generator, dtype=torch.float64)

    def normal(self, std: float, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``N(0, std^2)`` values from the generator."""
        return torch.normal(0.0, std, tuple(shape), generator=self.generator, dtype=dtype)


class SecureNoise:
    """Noise from a ChaCha20 keystream under a 256-bit key from ``os.urandom``.

    Nobody else can reproduce it: the key never leaves this object and nothing a run shares
    (seed, round, site) enters it. The nonce moves on every GiB of keystream, far below
    ChaCha20's 2^32-block counter.

    Args:
        key: ``None`` (a fresh key from ``os.urandom``: the only private choice); 32 given bytes
            make the stream reproducible, for tests of the sampler only.
    """

    NONCE_BYTES = 1 << 30
    """Keystream drawn under one nonce."""

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and len(key) != 32:
            raise ValueError(f"key must be 32 bytes, got {len(key)}")
        self._key = os.urandom(32) if key is None else key
        self._nonce = -1
        self._next_nonce()

    def _next_nonce(self) -> None:
        self._nonce += 1
        nonce = bytes(4) + self._nonce.to_bytes(12, "little")  # block counter 0, then the nonce
        self._stream = Cipher(algorithms.ChaCha20(self._key, nonce), mode=None).encryptor()
        self._used = 0

    def _words(self, count: int) -> torch.Tensor:
        """``count`` uniform 53-bit integers (int64)."""
        size = 8 * count
        if size == 0:
            return torch.zeros(0, dtype=torch.int64)
        if self._used + size > self.NONCE_BYTES:
            self._next_nonce()
        self._used += size
        raw = bytearray(self._stream.update(bytes(size)))
        return torch.frombuffer(raw, dtype=torch.int64) & ((1 << 53) - 1)

    def uniform(self, size: int) -> torch.Tensor:
        """``size`` uniforms on the grid ``k / 2^53`` in ``[0, 1)``."""
        return self._words(size).to(torch.float64) * 2.0**-53

    def standard_normal(self, count: int) -> torch.Tensor:
        """``count`` ``N(0, 1)`` values (float64) by the Box-Muller transform."""
        pairs = (count + 1) // 2
        u = self.uniform(2 * pairs).view(2, pairs)
        radius = torch.sqrt(-2.0 * torch.log1p(-u[0]))  # 1 - u in (0, 1]: log is finite
        angle = 2.0 * math.pi * u[1]
        return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)])[:count]

    def normal(self, std: float, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``N(0, std^2)`` values, each the sum of four ``N(0, std^2)`` draws halved (Opacus's
        floating-point mitigation), computed in float64 and rounded once to ``dtype``."""
        count = math.prod(shape)
        if std == 0:
            return torch.zeros(tuple(shape), dtype=dtype)
        draws = (std * self.standard_normal(4 * count)).view(4, count)
        return (draws.sum(dim=0) / 2.0).view(tuple(shape)).to(dtype)


def noise_source(mode: NoiseMode, seed: int) -> NoiseSource:
    """A fresh source for one mechanism run; ``seed`` is used only by ``REPRODUCIBLE``."""
    if mode is NoiseMode.SECURE:
        return SecureNoise()
    if mode is NoiseMode.SYSTEM:
        return GeneratorNoise(torch.Generator().manual_seed(secrets.randbits(64)))
    logger.warning("%s", NOT_PRIVATE)
    return GeneratorNoise(torch.Generator().manual_seed(seed))


class PoissonSampler(Sampler[list[int]]):
    """Poisson sampling for DP-SGD: each case joins each batch with probability ``sample_rate``,
    independently, using ``source`` (Opacus's ``UniformWithReplacementSampler`` with the
    randomness drawn from a ``NoiseSource``).

    Args:
        num_samples: Cases in the dataset.
        sample_rate: The probability ``q`` that a case joins a batch.
        source: The randomness.
        steps: Batches per pass.
    """

    def __init__(self, num_samples: int, sample_rate: float, source: NoiseSource, *, steps: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.source = source
        self.steps = steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            chosen = self.source.uniform(self.num_samples) < self.sample_rate
            yield chosen.nonzero().view(-1).tolist()
