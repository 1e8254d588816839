"""Brain-MRI-like digital phantoms: tissue maps with optional lesions, and their contrasts.

Coordinates are normalised to ``[-1, 1]`` along every axis, so anatomy scales with image size.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

import numpy as np

from medfed.data.smoothing import gaussian_blur, smooth_noise

Contrast = Literal["t1", "t2"]


class Tissue(IntEnum):
    """Tissue classes of the phantom's label map."""

    BACKGROUND = 0
    SCALP = 1
    SKULL = 2
    CSF = 3
    GREY_MATTER = 4
    WHITE_MATTER = 5
    VENTRICLE = 6
    LESION = 7


# Relative signal per tissue, indexed by ``Tissue``: T1 (post-contrast) has bright white matter,
# dark CSF and enhancing, hyperintense lesions; T2 has bright CSF, darker white matter and
# hyperintense lesions. Lesions are bright in both, but the background anatomy is inverted.
_SIGNAL: dict[Contrast, np.ndarray] = {
    "t1": np.array([0.0, 0.85, 0.08, 0.12, 0.45, 0.75, 0.10, 1.0]),
    "t2": np.array([0.0, 0.55, 0.08, 0.95, 0.55, 0.38, 0.95, 0.85]),
}

# Layers of the head by normalised elliptical radius: scalp, skull, CSF, brain inside.
_SKULL_OUTER, _CSF_OUTER, _BRAIN_OUTER, _WHITE_MATTER = 0.93, 0.86, 0.82, 0.60


@dataclass(frozen=True)
class Phantom:
    """One synthetic subject.

    Attributes:
        tissue: int array ``(H, W[, D])`` of ``Tissue`` values.
        head: bool array ``(H, W[, D])``, inside the head outline.
    """

    tissue: np.ndarray
    head: np.ndarray

    @property
    def lesion(self) -> np.ndarray:
        """Bool array ``(H, W[, D])`` marking lesion voxels."""
        return self.tissue == Tissue.LESION


def make_phantom(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    lesion_probability: float,
    lesion_radius: tuple[float, float],
) -> Phantom:
    """Draws a random head with brain, ventricles and, with some probability, lesions.

    Args:
        rng: Source of randomness.
        shape: ``(S, S)`` or ``(S, S, S)``.
        lesion_probability: Probability that the subject has lesions.
        lesion_radius: Range of lesion radii as fractions of the image size.

    Returns:
        The phantom.
    """
    coords = _grid(shape, rng)
    axes = _head_axes(rng, len(shape))
    rho = np.sqrt(sum((c / a) ** 2 for c, a in zip(coords, axes, strict=True)))
    rho = rho * (1 + 0.02 * smooth_noise(rng, shape, shape[0] / 8))
    tissue = np.full(shape, Tissue.BACKGROUND, dtype=np.int64)
    tissue[rho < 1.0] = Tissue.SCALP
    tissue[rho < _SKULL_OUTER] = Tissue.SKULL
    tissue[rho < _CSF_OUTER] = Tissue.CSF
    tissue[rho < _BRAIN_OUTER] = Tissue.GREY_MATTER
    gyri = 0.07 * smooth_noise(rng, shape, shape[0] / 12)
    tissue[rho < _WHITE_MATTER + gyri] = Tissue.WHITE_MATTER
    tissue[_ventricles(coords, rng)] = Tissue.VENTRICLE
    if rng.random() < lesion_probability:
        for _ in range(1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)):
            tissue[_lesion(coords, tissue, rng, lesion_radius)] = Tissue.LESION
    return Phantom(tissue=tissue, head=rho < 1.0)


def render(phantom: Phantom, contrast: Contrast, rng: np.random.Generator) -> np.ndarray:
    """The noise-free signal of a phantom in a contrast, with mild tissue texture.

    Args:
        phantom: The subject.
        contrast: ``"t1"`` or ``"t2"``.
        rng: Source of randomness for the texture.

    Returns:
        float64 array ``(H, W[, D])`` with values roughly in ``[0, 1]``.
    """
    return render_tissue(phantom, _SIGNAL[contrast], tissue_texture(rng, phantom.tissue.shape))


def tissue_texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A mild multiplicative tissue texture around 1 (5 % standard deviation), ``shape``."""
    return 1 + 0.05 * smooth_noise(rng, shape, 1.5)


def render_tissue(phantom: Phantom, signal: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """The noise-free signal of a phantom for a signal table.

    Args:
        phantom: The subject (its ``tissue`` values index ``signal``).
        signal: Relative signal per tissue value.
        texture: Multiplicative texture, same shape as the phantom.

    Returns:
        float64 array ``(H, W[, D])``, zero outside the head.
    """
    return gaussian_blur(signal[phantom.tissue] * texture, 0.5) * phantom.head


def _grid(shape: tuple[int, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Normalised coordinates, shifted and rotated in the (H, W) plane by a random pose."""
    axes = [np.linspace(-1.0, 1.0, n) - rng.normal(0, 0.03) for n in shape]
    coords = list(np.meshgrid(*axes, indexing="ij"))
    return _rotate(coords, rng.normal(0, 0.12))


def _rotate(coords: list[np.ndarray], angle: float) -> list[np.ndarray]:
    """Rotates the first two coordinate arrays by ``angle`` radians."""
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = coords[0], coords[1]
    return [cos * u + sin * v, -sin * u + cos * v, *coords[2:]]


def _head_axes(rng: np.random.Generator, dims: int) -> list[float]:
    """Semi-axes of the head outline (longer front to back, along H)."""
    return [a * (1 + rng.normal(0, 0.04)) for a in (0.84, 0.70, 0.74)[:dims]]


def _ventricles(coords: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Two tilted ellipses left and right of the midline, near the centre."""
    centre_u, gap = rng.normal(-0.05, 0.03), abs(rng.normal(0.11, 0.015))
    axes = [0.22 * (1 + rng.normal(0, 0.1)), 0.06 * (1 + rng.normal(0, 0.1)), 0.14]
    tilt = 0.25 + rng.normal(0, 0.05)
    inside = np.zeros(coords[0].shape, dtype=bool)
    for side in (-1, 1):
        shifted = [coords[0] - centre_u, coords[1] - side * gap, *coords[2:]]
        local = _rotate(shifted, side * tilt)
        inside |= sum((c / a) ** 2 for c, a in zip(local, axes, strict=False)) < 1
    return inside


def _lesion(
    coords: list[np.ndarray],
    tissue: np.ndarray,
    rng: np.random.Generator,
    radius: tuple[float, float],
) -> np.ndarray:
    """An irregular blob centred in white matter, clipped to the brain parenchyma."""
    candidates = np.argwhere(tissue == Tissue.WHITE_MATTER)
    centre = candidates[rng.integers(len(candidates))]
    r = 2.0 * rng.uniform(*radius)  # fraction of the image size -> normalised units
    distance = np.sqrt(sum((c - c[tuple(centre)]) ** 2 for c in coords)) / r
    wobble = 0.25 * smooth_noise(rng, tissue.shape, max(1.0, r * tissue.shape[0] / 4))
    parenchyma = np.isin(tissue, [Tissue.WHITE_MATTER, Tissue.GREY_MATTER, Tissue.LESION])
    return (distance < 1 + wobble) & parenchyma
