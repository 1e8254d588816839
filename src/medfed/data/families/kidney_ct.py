"""``kidney_ct``: abdominal-CT-like 3D volumes in Hounsfield units with kidneys and kidney tumours.

Anatomy, in mm around the renal hilum level: air (-1000 HU), a body outline with subcutaneous fat
(-100) and an abdomen of soft tissue (40) mixed with mesenteric fat, liver, psoas muscles, the
aorta, a vertebral body (cortical bone 700, marrow 250) and two kidneys (enhanced cortex, medulla,
renal sinus fat), the left one higher. A tumour (heterogeneous, about 50-100 HU, necrotic centre
when large) grows from the surface of one kidney. Axes: 0 = right to left, 1 = anterior to
posterior, 2 = cranio-caudal (slices).

Each site's protocol sets the in-plane field of view and the cranio-caudal coverage (hence the
voxel spacing written to the NIfTI affine, anisotropic), the slice profile (each slice averages
three sub-slices over its thickness: partial volume), the reconstruction kernel (in-plane blur),
the noise (dose) and the contrast phase (cortex and medulla enhancement).
Labels: 0 background, 1 kidney, 2 tumour. Class: 1 = the case has a tumour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medfed.data.families.base import FAMILIES, Family, SyntheticCase
from medfed.data.scanner import REFERENCE_SIZE
from medfed.data.smoothing import gaussian_blur, smooth_noise

AIR, FAT, SOFT_TISSUE, MUSCLE, LIVER, BONE, MARROW = -1000.0, -100.0, 40.0, 50.0, 60.0, 700.0, 250.0
"""Hounsfield units of the unenhanced tissues."""

_SUB_SLICES = (-1 / 3, 0.0, 1 / 3)
"""Positions within a slice, in slice thicknesses, that its partial-volume signal averages."""


@dataclass(frozen=True)
class CTProtocol:
    """One site's CT scanner and protocol.

    Attributes:
        fov_mm: In-plane field of view (square), in mm.
        coverage_mm: Cranio-caudal extent of the volume, in mm (slice thickness = coverage / S).
        kernel: In-plane blur sigma of the reconstruction kernel, in pixels at 64 (soft > sharp).
        noise_hu: Standard deviation of the (slightly correlated) image noise, in HU.
        cortex_hu: Enhanced renal cortex, in HU.
        medulla_hu: Renal medulla, in HU (below the cortex in the corticomedullary phase).
    """

    fov_mm: float
    coverage_mm: float
    kernel: float
    noise_hu: float
    cortex_hu: float
    medulla_hu: float

    def __post_init__(self) -> None:
        if self.fov_mm < 200 or self.coverage_mm < 80:
            raise ValueError("fov_mm must be >= 200 and coverage_mm >= 80 (the kidneys must fit)")
        if self.kernel < 0 or self.noise_hu < 0:
            raise ValueError("kernel and noise_hu must be >= 0")


@dataclass(frozen=True)
class KidneySite:
    """One hospital of the ``kidney_ct`` family.

    Attributes:
        name: Site name, also its folder name.
        num_cases: Number of cases.
        protocol: The hospital's scanner and protocol.
        tumour_prevalence: Fraction of cases with a tumour, in ``[0, 1]``.
        tumour_radius_mm: ``(min, max)`` tumour radius in mm.
    """

    family: ClassVar[str] = "kidney_ct"
    name: str
    num_cases: int
    protocol: CTProtocol
    tumour_prevalence: float
    tumour_radius_mm: tuple[float, float]

    def __post_init__(self) -> None:
        if self.num_cases < 1:
            raise ValueError(f"num_cases must be >= 1, got {self.num_cases}")
        if not 0 <= self.tumour_prevalence <= 1:
            raise ValueError(f"tumour_prevalence must be in [0, 1], got {self.tumour_prevalence}")
        if not 5 <= self.tumour_radius_mm[0] <= self.tumour_radius_mm[1] <= 60:
            raise ValueError(
                f"tumour_radius_mm must satisfy 5 <= min <= max <= 60, got {self.tumour_radius_mm}"
            )

    @property
    def description(self) -> str:
        """One line for ``dataset.json``."""
        return "medfed synthetic abdominal CT (HU)"

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
        """One abdomen imaged with the site's protocol (``shape`` must be 3D)."""
        if len(shape) != 3:
            raise ValueError(f"kidney_ct is 3D only, got shape {shape}")
        protocol = self.protocol
        spacing = (
            protocol.fov_mm / shape[0],
            protocol.fov_mm / shape[1],
            protocol.coverage_mm / shape[2],
        )
        patient = _draw_patient(rng, shape, self.tumour_prevalence, self.tumour_radius_mm)
        axes = [(np.arange(n) + 0.5 - n / 2) * step for n, step in zip(shape, spacing, strict=True)]
        slices = []
        for offset in _SUB_SLICES:
            coords = np.meshgrid(axes[0], axes[1], axes[2] + offset * spacing[2], indexing="ij")
            slices.append(_render(patient, coords, protocol))
        hu = np.mean([hu for hu, _ in slices], axis=0)
        labels = slices[_SUB_SLICES.index(0.0)][1]
        sigma = protocol.kernel * shape[0] / REFERENCE_SIZE
        hu = np.stack([gaussian_blur(hu[..., k], sigma) for k in range(shape[2])], axis=-1)
        hu = hu + protocol.noise_hu * smooth_noise(rng, shape, 0.5)
        image = np.clip(hu, -1024.0, 3071.0).astype(np.float32)[None]
        return SyntheticCase(image, labels.astype(np.uint8), int(patient.tumour is not None), spacing)


@dataclass(frozen=True)
class _Tumour:
    centre: np.ndarray
    radius: float


@dataclass(frozen=True)
class _Patient:
    """One subject's anatomy: sizes and positions in mm (before ``scale``), texture fields on
    the voxel grid."""

    scale: float
    shift: np.ndarray
    body: tuple[float, float]
    fat: float
    kidney_z: tuple[float, float]
    tumour: _Tumour | None
    mesentery: np.ndarray
    tumour_texture: np.ndarray
    wobble: np.ndarray


def _draw_patient(
    rng: np.random.Generator, shape: tuple[int, ...], prevalence: float, radius: tuple[float, float]
) -> _Patient:
    """Draws a subject's size, position, kidney levels and tumour."""
    scale = float(np.clip(rng.normal(1.0, 0.07), 0.85, 1.15))
    shift = rng.normal(0.0, 1.0, 3) * np.array([6.0, 5.0, 10.0])
    kidney_z = (8.0 + rng.normal(0, 5), -8.0 + rng.normal(0, 5))  # left higher than right
    side = int(rng.integers(2))
    tumour = None
    if rng.random() < prevalence:
        sign = 1 if side == 0 else -1
        direction = rng.normal(0.0, 1.0, 3) * np.array([1.0, 0.8, 1.5])
        direction[0] = sign * abs(direction[0])  # grows laterally or along the poles
        direction /= np.linalg.norm(direction)
        depth = rng.uniform(0.6, 1.0)
        surface = direction * np.array([28.0, 22.0, 52.0]) * depth
        centre = np.array([sign * 75.0, 45.0, kidney_z[side]]) + surface
        tumour = _Tumour(centre, rng.uniform(*radius))
    return _Patient(
        scale=scale,
        shift=shift,
        body=(165.0 * (1 + rng.normal(0, 0.06)), 120.0 * (1 + rng.normal(0, 0.06))),
        fat=rng.uniform(12.0, 35.0),
        kidney_z=kidney_z,
        tumour=tumour,
        mesentery=smooth_noise(rng, shape, shape[0] / 16),
        tumour_texture=smooth_noise(rng, shape, shape[0] / 24),
        wobble=smooth_noise(rng, shape, shape[0] / 12),
    )


def _render(
    patient: _Patient, coords: Sequence[np.ndarray], protocol: CTProtocol
) -> tuple[np.ndarray, np.ndarray]:
    """HU and labels of the anatomy at voxel centres ``coords`` (mm, patient-centred)."""
    x, y, z = ((c - s) / patient.scale for c, s in zip(coords, patient.shift, strict=True))
    hu = np.full(x.shape, AIR)
    labels = np.zeros(x.shape, dtype=np.uint8)
    a, b = patient.body
    hu[(x / a) ** 2 + (y / b) ** 2 < 1] = FAT
    abdomen = (x / (a - patient.fat)) ** 2 + (y / (b - patient.fat)) ** 2 < 1
    hu[abdomen] = np.where(patient.mesentery > -0.4, SOFT_TISSUE, FAT + 10)[abdomen]
    hu[_ellipsoid(x + 70, y + 5, z - 45, (85, 75, 95))] = LIVER + 0.3 * (protocol.medulla_hu - 40)
    for side in (-1, 1):
        hu[_ellipsoid(x - side * 38, y - 50, z, (16, 20, 1e9))] = MUSCLE
    vertebra = np.hypot(x, y - 62)
    hu[vertebra < 19] = BONE
    hu[vertebra < 15] = MARROW
    hu[np.hypot(x + 10, y - 25) < 11] = protocol.cortex_hu + 60  # aorta, arterial contrast
    for index, side in enumerate((1, -1)):  # left (x > 0) then right
        _add_kidney(hu, labels, (x - side * 75, y - 45, z - patient.kidney_z[index]), side, protocol)
    if patient.tumour is not None:
        _add_tumour(hu, labels, (x, y, z), patient.tumour, patient)
    return hu, labels


def _add_kidney(
    hu: np.ndarray,
    labels: np.ndarray,
    local: tuple[np.ndarray, ...],
    side: int,
    protocol: CTProtocol,
) -> None:
    """Paints one kidney (cortex, medulla, sinus fat) centred at ``local == 0``, hilum medial."""
    angle = side * 0.45  # the hilum faces antero-medially
    u = np.cos(angle) * local[0] + np.sin(angle) * local[1]
    v = -np.sin(angle) * local[0] + np.cos(angle) * local[1]
    radius = np.sqrt((u / 28) ** 2 + (v / 22) ** 2 + (local[2] / 52) ** 2)
    kidney = radius < 1
    hu[kidney] = protocol.cortex_hu
    hu[radius < 0.72] = protocol.medulla_hu
    sinus = (radius < 0.5) & (side * u < 0)
    hu[sinus] = FAT + 20
    labels[kidney & ~sinus] = 1


def _add_tumour(
    hu: np.ndarray,
    labels: np.ndarray,
    xyz: tuple[np.ndarray, ...],
    tumour: _Tumour,
    patient: _Patient,
) -> None:
    """Paints the tumour: heterogeneous enhancement, a necrotic centre when large; label 2."""
    distance = np.sqrt(sum((c - t) ** 2 for c, t in zip(xyz, tumour.centre, strict=True))) / tumour.radius
    inside = (distance < 1 + 0.15 * patient.wobble) & (hu > AIR)
    hu[inside] = (75.0 + 15.0 * patient.tumour_texture)[inside]
    if tumour.radius > 25:
        hu[inside & (distance < 0.4)] = 25.0
    labels[inside] = 2


def _ellipsoid(x: np.ndarray, y: np.ndarray, z: np.ndarray, axes: tuple[float, float, float]) -> np.ndarray:
    """Inside the axis-aligned ellipsoid with semi-axes ``axes`` (mm) centred at 0."""
    return (x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2 < 1


DEFAULT_SITES: tuple[KidneySite, ...] = (
    # Nephrographic phase, soft kernel, moderate dose.
    KidneySite("hospital_a", 300, CTProtocol(260.0, 160.0, 0.6, 12.0, 160.0, 150.0), 0.9, (12.0, 35.0)),
    # Corticomedullary phase (bright cortex, dark medulla), sharp kernel, thin coverage.
    KidneySite("hospital_b", 250, CTProtocol(240.0, 140.0, 0.2, 20.0, 190.0, 90.0), 0.85, (12.0, 35.0)),
    # Large field of view and long coverage, very soft kernel, low noise; larger tumours.
    KidneySite("hospital_c", 200, CTProtocol(320.0, 200.0, 1.0, 8.0, 140.0, 135.0), 0.9, (18.0, 45.0)),
    # Low-dose corticomedullary scans covering only the kidneys' middle.
    KidneySite("hospital_d", 150, CTProtocol(280.0, 120.0, 0.5, 30.0, 175.0, 80.0), 0.8, (12.0, 30.0)),
    # The unseen hospital: late nephrographic phase (weaker enhancement), its own geometry.
    KidneySite("hospital_e", 200, CTProtocol(300.0, 180.0, 0.7, 15.0, 130.0, 125.0), 0.9, (12.0, 40.0)),
)
"""Five hospitals; ``hospital_e`` is meant to stay unseen."""


@FAMILIES.register("kidney_ct")
def kidney_ct() -> Family:
    """Abdominal CT with kidney and kidney-tumour labels, 3D only."""
    return Family(
        name="kidney_ct",
        channels=("CT",),
        labels=("background", "kidney", "tumour"),
        binary_label="kidney and tumour",
        dims=(3,),
        sites=DEFAULT_SITES,
        unseen_site="hospital_e",
    )
