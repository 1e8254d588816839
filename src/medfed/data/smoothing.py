"""Gaussian smoothing and smooth random fields in pure NumPy (FFT-based, any dimension).

The FFT treats the array as periodic; callers keep content away from the borders.
"""

from __future__ import annotations

import numpy as np


def gaussian_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """Blurs an array with an isotropic Gaussian.

    Args:
        array: Real array of any shape ``(H, W[, D])``.
        sigma: Standard deviation in voxels; ``0`` returns a copy.

    Returns:
        The blurred array, float64, same shape.
    """
    if sigma <= 0:
        return array.astype(np.float64)
    spectrum = np.fft.rfftn(array)
    response = _gaussian_response(array.shape, sigma)
    return np.fft.irfftn(spectrum * response, s=array.shape, axes=tuple(range(array.ndim)))


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """A smooth random field with zero mean and unit standard deviation.

    Args:
        rng: Source of randomness.
        shape: Output shape ``(H, W[, D])``.
        sigma: Correlation length in voxels (Gaussian smoothing of white noise).

    Returns:
        The field, float64.
    """
    field = gaussian_blur(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def _gaussian_response(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Frequency response of a Gaussian of width ``sigma`` on the ``rfftn`` grid of ``shape``."""
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    squared = sum(g**2 for g in grids)
    return np.exp(-2.0 * (np.pi * sigma) ** 2 * squared)
