"""``brain_lesion``: single-contrast brain MRI (T1-like or T2-like per site) with focal lesions.

Each site has its own scanner signature (contrast, scale, gamma, bias field, noise, blur), its own
lesion prevalence and size (label shift) and its own number of cases (quantity skew).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from medfed.data.families.base import FAMILIES, Family, SyntheticCase
from medfed.data.phantom import make_phantom, render
from medfed.data.scanner import Acquisition, ScannerProfile, acquire


@dataclass(frozen=True)
class SyntheticSite:
    """One synthetic hospital of the ``brain_lesion`` family.

    Attributes:
        name: Site name, also its folder name.
        scanner: The site's scanner signature.
        num_cases: Number of cases to generate.
        lesion_prevalence: Probability that a case has lesions, in ``[0, 1]``.
        lesion_radius: ``(min, max)`` lesion radius as fractions of the image size.
    """

    family: ClassVar[str] = "brain_lesion"
    name: str
    scanner: ScannerProfile
    num_cases: int
    lesion_prevalence: float
    lesion_radius: tuple[float, float]

    def __post_init__(self) -> None:
        if self.num_cases < 1:
            raise ValueError(f"num_cases must be >= 1, got {self.num_cases}")
        if not 0.0 <= self.lesion_prevalence <= 1.0:
            raise ValueError(f"lesion_prevalence must be in [0, 1], got {self.lesion_prevalence}")
        low, high = self.lesion_radius
        if not 0.0 < low <= high < 0.5:
            raise ValueError(f"lesion_radius must satisfy 0 < min <= max < 0.5, got {self.lesion_radius}")

    @property
    def description(self) -> str:
        """One line for ``dataset.json``."""
        return f"medfed synthetic brain MRI ({self.scanner.contrast.upper()})"

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
        """One head, 1 mm isotropic; mask 1 = lesion, class 1 = the case has a lesion."""
        phantom = make_phantom(rng, shape, self.lesion_prevalence, self.lesion_radius)
        image = acquire(
            render(phantom, self.scanner.contrast, rng), phantom.head, self.scanner.acquisition, rng
        )
        mask = phantom.lesion.astype(np.uint8)
        return SyntheticCase(image[None], mask, int(mask.any()), (1.0,) * len(shape))


DEFAULT_SITES: tuple[SyntheticSite, ...] = (
    # 1.5T-like T1: low noise, mild bias, the largest site.
    SyntheticSite(
        "hospital_a", ScannerProfile("t1", Acquisition(1000.0, 1.0, 0.10, 0.02, 0.5)), 60, 0.6, (0.06, 0.11)
    ),
    # T2 with strong gamma and bias field.
    SyntheticSite(
        "hospital_b", ScannerProfile("t2", Acquisition(600.0, 1.6, 0.45, 0.04, 0.6)), 40, 0.5, (0.06, 0.12)
    ),
    # Old T1 scanner: noisy and blurred, small site with small lesions.
    SyntheticSite(
        "hospital_c", ScannerProfile("t1", Acquisition(250.0, 0.85, 0.20, 0.07, 1.0)), 24, 0.4, (0.05, 0.08)
    ),
    # The unseen site: T2 with its own scale, gamma, bias and noise.
    SyntheticSite(
        "hospital_d", ScannerProfile("t2", Acquisition(2500.0, 0.7, 0.30, 0.05, 0.8)), 30, 0.5, (0.06, 0.11)
    ),
)
"""Four sites with clearly different signatures; ``hospital_d`` is meant to stay unseen."""


@FAMILIES.register("brain_lesion")
def brain_lesion() -> Family:
    """The default family: the demo's four brain-MRI sites."""
    return Family(
        name="brain_lesion",
        channels=("MRI",),
        labels=("background", "lesion"),
        binary_label="lesion",
        dims=(2, 3),
        sites=DEFAULT_SITES,
        unseen_site="hospital_d",
    )
