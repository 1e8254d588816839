"""A site's scanner signature, applied to a noise-free phantom signal.

The acquisition model, in order: point-spread blur (resolution), smooth multiplicative bias
field (coil inhomogeneity), Rician noise (magnitude of complex Gaussian noise), then the
reconstruction's gamma and intensity scale. Voxels outside the head are set to 0, as after
the usual head masking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medfed.data.smoothing import gaussian_blur

REFERENCE_SIZE = 64
"""Image size at which ``Acquisition.blur`` is given in pixels; it scales with the size."""


@dataclass(frozen=True)
class Acquisition:
    """How a scanner images a signal, whatever its contrast.

    Attributes:
        intensity_scale: Multiplies the final intensities (arbitrary scanner units).
        gamma: Exponent applied to the signal (``1`` = linear).
        bias_field: Amplitude of the smooth multiplicative bias field: the log-gain lies in
            ``[-bias_field, bias_field]`` (``0`` = none).
        noise: Standard deviation of the complex Gaussian noise, relative to a signal of about 1.
        blur: Gaussian point-spread sigma in pixels at 64x64 (``0`` = none).
    """

    intensity_scale: float
    gamma: float
    bias_field: float
    noise: float
    blur: float

    def __post_init__(self) -> None:
        for name in ("intensity_scale", "gamma"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("bias_field", "noise", "blur"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ScannerProfile:
    """How one site's single-contrast scanner turns anatomy into intensities.

    Attributes:
        contrast: ``"t1"`` (bright white matter, dark lesions) or ``"t2"`` (bright CSF and
            lesions).
        acquisition: The contrast-independent acquisition settings.
    """

    contrast: Literal["t1", "t2"]
    acquisition: Acquisition

    def __post_init__(self) -> None:
        if self.contrast not in ("t1", "t2"):
            raise ValueError(f"contrast must be 't1' or 't2', got {self.contrast!r}")


def acquire(
    signal: np.ndarray, head: np.ndarray, profile: Acquisition, rng: np.random.Generator
) -> np.ndarray:
    """Images a noise-free signal with a scanner.

    Args:
        signal: float array ``(H, W[, D])`` with values roughly in ``[0, 1]``.
        head: bool array ``(H, W[, D])``; voxels outside are set to 0.
        profile: The scanner's acquisition settings.
        rng: Source of randomness for the bias field orientation and the noise.

    Returns:
        float32 array ``(H, W[, D])`` of non-negative intensities.
    """
    image = gaussian_blur(signal, profile.blur * signal.shape[0] / REFERENCE_SIZE)
    image = image * bias_field(rng, signal.shape, profile.bias_field)
    real = image + rng.normal(0.0, profile.noise, image.shape)
    imaginary = rng.normal(0.0, profile.noise, image.shape)
    image = np.sqrt(real**2 + imaginary**2) ** profile.gamma * profile.intensity_scale
    return (image * head).astype(np.float32)


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], amplitude: float) -> np.ndarray:
    """A random smooth gain field: ``exp`` of a second-order polynomial in the coordinates.

    Args:
        rng: Source of randomness for the polynomial's coefficients.
        shape: ``(H, W[, D])``.
        amplitude: The log-gain lies in ``[-amplitude, amplitude]``.

    Returns:
        float64 array of positive gains.
    """
    coords = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    terms = [*coords, *(a * b for i, a in enumerate(coords) for b in coords[i:])]
    poly = sum(rng.normal() * t for t in terms)
    poly = poly / (np.abs(poly).max() + 1e-12)
    return np.exp(amplitude * poly)
