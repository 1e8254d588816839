"""``skin_lesion``: dermoscopy-like 2D RGB images, one pigmented skin lesion each.

Image model: skin reflectance (a skin tone per case, mild texture) attenuated by the lesion's
melanin (Beer-Lambert, blue absorbed most, so lesions look brown), dark hair strands, then the
site's camera: illumination ramp, vignetting, an optional circular dermoscope aperture (black
outside), white balance (colour temperature), exposure, blur and multiplicative noise. Values are
8-bit-like, in ``(0, 255]`` (exactly 0 only outside the aperture), stored as float32.
Mask: 1 = lesion. Class: 1 = melanoma-like (irregular border, variegated and blue-grey pigment),
0 = naevus-like (round, even pigment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medfed.data.families.base import FAMILIES, Family, SyntheticCase
from medfed.data.smoothing import gaussian_blur, smooth_noise

_LIGHT_SKIN = np.array([0.93, 0.77, 0.67])
"""RGB reflectance of light skin (skin tone 0)."""
_DARK_SKIN = np.array([0.48, 0.33, 0.24])
"""RGB reflectance of dark skin (skin tone 1)."""
_MELANIN = np.array([0.55, 0.95, 1.35])
"""Optical density per unit of epidermal melanin, RGB: brown."""
_DEEP_MELANIN = np.array([1.0, 0.85, 0.6])
"""Optical density per unit of deep (dermal) melanin, RGB: blue-grey."""
_HAIR = np.array([0.16, 0.12, 0.10])
"""RGB reflectance of a dark hair."""


@dataclass(frozen=True)
class Camera:
    """How one site's dermoscope and camera image the skin.

    Attributes:
        white_balance: RGB gains (warm light: red up, blue down).
        exposure: Overall gain (1 = a white surface reads about 255).
        gradient: Amplitude of a linear illumination ramp across the field, in ``[0, 1)``.
        vignetting: Relative darkening at the corners, in ``[0, 1)``.
        aperture: Whether the field is a circle with black corners (contact dermoscope).
        noise: Standard deviation of the multiplicative log-normal noise.
        blur: Gaussian blur sigma in pixels at 64x64.
    """

    white_balance: tuple[float, float, float]
    exposure: float
    gradient: float
    vignetting: float
    aperture: bool
    noise: float
    blur: float

    def __post_init__(self) -> None:
        if min(self.white_balance) <= 0 or self.exposure <= 0:
            raise ValueError("white_balance gains and exposure must be > 0")
        if not (0 <= self.gradient < 1 and 0 <= self.vignetting < 1):
            raise ValueError("gradient and vignetting must be in [0, 1)")
        if self.noise < 0 or self.blur < 0:
            raise ValueError("noise and blur must be >= 0")


@dataclass(frozen=True)
class SkinSite:
    """One dermatology clinic of the ``skin_lesion`` family.

    Attributes:
        name: Site name, also its folder name.
        num_cases: Number of cases.
        camera: The clinic's imaging chain.
        field_mm: Width of the imaged field in mm (pixel size = ``field_mm / S``).
        skin_tone: ``(min, max)`` skin tone of the population, 0 = light, 1 = dark.
        hair: Mean number of hair strands per image.
        melanoma_prevalence: Fraction of melanoma-like lesions, in ``[0, 1]``.
        lesion_radius: ``(min, max)`` lesion radius as fractions of the image size.
    """

    family: ClassVar[str] = "skin_lesion"
    name: str
    num_cases: int
    camera: Camera
    field_mm: float
    skin_tone: tuple[float, float]
    hair: float
    melanoma_prevalence: float
    lesion_radius: tuple[float, float]

    def __post_init__(self) -> None:
        if self.num_cases < 1 or self.field_mm <= 0 or self.hair < 0:
            raise ValueError("num_cases must be >= 1, field_mm > 0 and hair >= 0")
        if not 0 <= self.skin_tone[0] <= self.skin_tone[1] <= 1:
            raise ValueError(f"skin_tone must satisfy 0 <= min <= max <= 1, got {self.skin_tone}")
        if not 0 <= self.melanoma_prevalence <= 1:
            raise ValueError(f"melanoma_prevalence must be in [0, 1], got {self.melanoma_prevalence}")
        if not 0 < self.lesion_radius[0] <= self.lesion_radius[1] < 0.4:
            raise ValueError(f"lesion_radius must satisfy 0 < min <= max < 0.4, got {self.lesion_radius}")

    @property
    def description(self) -> str:
        """One line for ``dataset.json``."""
        return "medfed synthetic dermoscopy (RGB)"

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
        """One lesion on skin, imaged by the clinic's camera (``shape`` must be 2D)."""
        if len(shape) != 2:
            raise ValueError(f"skin_lesion is 2D only, got shape {shape}")
        coords = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
        melanoma = bool(rng.random() < self.melanoma_prevalence)
        mask, coverage = _lesion_shape(rng, coords, melanoma, self.lesion_radius)
        skin = _skin(rng, shape, self.skin_tone)
        reflectance = skin * _transmission(rng, coverage, melanoma)
        reflectance = _with_hair(rng, coords, reflectance, self.hair)
        image = _photograph(rng, coords, reflectance, self.camera)
        spacing = (self.field_mm / shape[0], self.field_mm / shape[1])
        return SyntheticCase(image, mask.astype(np.uint8), int(melanoma), spacing)


def _lesion_shape(
    rng: np.random.Generator, coords: Sequence[np.ndarray], melanoma: bool, radius: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The lesion mask and its soft coverage in ``[0, 1]``, both ``(H, W)``.

    The border is a radius varying with the angle (harmonics 2 to 6), irregular for melanoma.
    """
    centre = rng.normal(0.0, 0.12, 2)
    u, v = coords[0] - centre[0], coords[1] - centre[1]
    distance, angle = np.hypot(u, v), np.arctan2(v, u)
    irregularity = 0.12 if melanoma else 0.04
    border = np.ones_like(angle)
    for k in range(2, 7):
        border += rng.normal(0.0, irregularity / k * 2) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    if melanoma:
        border += 0.06 * smooth_noise(rng, angle.shape, angle.shape[0] / 16)
    edge = 2.0 * rng.uniform(*radius) * np.clip(border, 0.5, 1.5)
    coverage = 1.0 / (1.0 + np.exp(-(edge - distance) / 0.02))
    return distance < edge, coverage


def _skin(rng: np.random.Generator, shape: tuple[int, ...], tone_range: tuple[float, float]) -> np.ndarray:
    """Skin reflectance ``(3, H, W)``: a tone between light and dark skin, mild texture."""
    tone = rng.uniform(*tone_range)
    colour = (1 - tone) * _LIGHT_SKIN + tone * _DARK_SKIN
    texture = 1 + 0.03 * smooth_noise(rng, shape, shape[0] / 20)
    return colour[:, None, None] * texture[None]


def _transmission(rng: np.random.Generator, coverage: np.ndarray, melanoma: bool) -> np.ndarray:
    """Fraction of light the lesion's pigment lets through, ``(3, H, W)``."""
    size = coverage.shape[0]
    density = coverage * rng.uniform(0.6, 1.0)
    deep = np.zeros_like(coverage)
    if melanoma:  # variegated pigment with blue-grey dermal patches
        density = density * np.clip(1 + 0.45 * smooth_noise(rng, coverage.shape, size / 12), 0.3, None)
        deep = coverage * 0.6 * np.clip(smooth_noise(rng, coverage.shape, size / 10), 0, None)
    else:  # an even pigment network
        density = density * (1 + 0.1 * smooth_noise(rng, coverage.shape, size / 32))
    optical_density = _MELANIN[:, None, None] * density + _DEEP_MELANIN[:, None, None] * deep
    return np.exp(-optical_density)


def _with_hair(
    rng: np.random.Generator, coords: Sequence[np.ndarray], reflectance: np.ndarray, mean_count: float
) -> np.ndarray:
    """Overlays a Poisson number of dark, curved hair strands (quadratic Bezier curves)."""
    points = np.stack([c.ravel() for c in coords], axis=1)
    for _ in range(rng.poisson(mean_count)):
        ends = rng.uniform(-1.3, 1.3, (2, 2))
        control = ends.mean(axis=0) + rng.normal(0.0, 0.3, 2)
        t = np.linspace(0.0, 1.0, 48)[:, None]
        curve = (1 - t) ** 2 * ends[0] + 2 * (1 - t) * t * control + t**2 * ends[1]
        distance = np.sqrt(((points[:, None, :] - curve[None]) ** 2).sum(-1)).min(axis=1)
        alpha = 0.9 * np.clip(1 - distance / rng.uniform(0.015, 0.03), 0, 1).reshape(coords[0].shape)
        reflectance = reflectance * (1 - alpha) + _HAIR[:, None, None] * alpha
    return reflectance


def _photograph(
    rng: np.random.Generator, coords: Sequence[np.ndarray], reflectance: np.ndarray, camera: Camera
) -> np.ndarray:
    """The camera's float32 RGB image ``(3, H, W)`` of a reflectance, in ``(0, 255]``."""
    u, v = coords
    direction = rng.uniform(0, 2 * np.pi)
    light = 1 + camera.gradient * (np.cos(direction) * u + np.sin(direction) * v) / np.sqrt(2)
    light = light * (1 - camera.vignetting * (u**2 + v**2) / 2)
    gains = camera.exposure * np.asarray(camera.white_balance)[:, None, None]
    image = reflectance * light[None] * gains
    sigma = camera.blur * u.shape[0] / 64
    image = np.stack([gaussian_blur(channel, sigma) for channel in image])
    image = image * np.exp(rng.normal(0.0, camera.noise, image.shape))
    image = 255.0 * np.clip(image, 1e-3, 1.0)
    if camera.aperture:
        image = image * (np.hypot(u, v) <= 1.0)[None]
    return image.astype(np.float32)


DEFAULT_SITES: tuple[SkinSite, ...] = (
    # Polarised dermoscope, neutral white balance, even light; light-skinned population.
    SkinSite(
        "clinic_a",
        400,
        Camera((1.0, 1.0, 1.0), 1.0, 0.1, 0.1, False, 0.03, 0.4),
        20.0,
        (0.0, 0.4),
        1.0,
        0.2,
        (0.12, 0.22),
    ),
    # Warm halogen light, strong ramp, contact dermoscope with a circular field; hairy skin.
    SkinSite(
        "clinic_b",
        300,
        Camera((1.18, 1.0, 0.78), 0.95, 0.4, 0.45, True, 0.04, 0.6),
        15.0,
        (0.0, 0.5),
        3.0,
        0.3,
        (0.15, 0.26),
    ),
    # Phone-attached dermoscope: cool, dim, noisy and soft; darker-skinned population.
    SkinSite(
        "clinic_c",
        200,
        Camera((0.85, 1.0, 1.22), 0.7, 0.2, 0.25, False, 0.09, 1.1),
        25.0,
        (0.3, 0.9),
        0.5,
        0.15,
        (0.10, 0.18),
    ),
    # Over-exposed camera with a circular field, little hair.
    SkinSite(
        "clinic_d",
        250,
        Camera((1.05, 1.05, 0.95), 1.25, 0.15, 0.3, True, 0.03, 0.5),
        18.0,
        (0.1, 0.6),
        0.5,
        0.25,
        (0.12, 0.24),
    ),
    # The unseen clinic: greenish white balance, ramp and vignetting of its own.
    SkinSite(
        "clinic_e",
        150,
        Camera((1.05, 1.12, 0.85), 0.9, 0.3, 0.35, False, 0.05, 0.8),
        22.0,
        (0.1, 0.7),
        2.0,
        0.25,
        (0.11, 0.22),
    ),
)
"""Five clinics; ``clinic_e`` is meant to stay unseen."""


@FAMILIES.register("skin_lesion")
def skin_lesion() -> Family:
    """Dermoscopy-like lesion segmentation, 2D RGB."""
    return Family(
        name="skin_lesion",
        channels=("R", "G", "B"),
        labels=("background", "lesion"),
        binary_label="lesion",
        dims=(2,),
        sites=DEFAULT_SITES,
        unseen_site="clinic_e",
    )
