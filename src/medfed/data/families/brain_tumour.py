"""``brain_tumour_mpmri``: multi-parametric brain MRI (T1, T1ce, T2, FLAIR) with a glioma.

The four channels share one head (``medfed.data.phantom``) and one tumour: a core, either
high-grade (necrotic centre inside an enhancing rim) or low-grade (non-enhancing), inside a wider,
irregular peritumoral edema confined to the brain parenchyma. Each channel renders the tissues in
its own contrast (edema bright in T2 and FLAIR, CSF dark in FLAIR, the rim bright only in T1ce),
then goes through the site's acquisition (scale, gamma, bias field, Rician noise, blur). The site's
``sequence_gamma`` bends each channel's tissue contrasts (sequence parameters) and its
``tissue_contrast`` scales every tissue's difference from mid-grey (field strength).
Labels as in the MSD brain-tumour task: 0 background, 1 edema, 2 non-enhancing tumour and
necrosis, 3 enhancing tumour. Class: 1 = high grade.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np

from medfed.data.families.base import FAMILIES, Family, SyntheticCase
from medfed.data.phantom import Phantom, Tissue, make_phantom, render_tissue, tissue_texture
from medfed.data.scanner import Acquisition, acquire
from medfed.data.smoothing import smooth_noise


class TumourTissue(IntEnum):
    """Tumour compartments, numbered after ``medfed.data.phantom.Tissue``."""

    EDEMA = 8
    NECROSIS = 9
    NON_ENHANCING = 10
    ENHANCING = 11


CHANNELS = ("T1", "T1ce", "T2", "FLAIR")

# Relative signal per tissue value (0-7 as ``Tissue``, 8-11 as ``TumourTissue``), per channel.
# Columns: background, scalp, skull, CSF, grey matter, white matter, ventricle, (focal lesion of
# the brain_lesion family, absent here), edema, necrosis, non-enhancing tumour, enhancing tumour.
_SIGNAL = np.array(
    [
        [0.0, 0.85, 0.08, 0.12, 0.45, 0.75, 0.10, 0.0, 0.40, 0.22, 0.35, 0.45],  # T1
        [0.0, 0.85, 0.08, 0.12, 0.45, 0.75, 0.10, 0.0, 0.42, 0.22, 0.38, 1.00],  # T1ce
        [0.0, 0.55, 0.08, 0.95, 0.55, 0.38, 0.95, 0.0, 0.82, 0.92, 0.78, 0.62],  # T2
        [0.0, 0.60, 0.08, 0.10, 0.55, 0.40, 0.08, 0.0, 0.92, 0.50, 0.80, 0.72],  # FLAIR
    ]
)

_LABEL_OF = np.zeros(12, dtype=np.uint8)
_LABEL_OF[TumourTissue.EDEMA] = 1
_LABEL_OF[[TumourTissue.NECROSIS, TumourTissue.NON_ENHANCING]] = 2
_LABEL_OF[TumourTissue.ENHANCING] = 3


@dataclass(frozen=True)
class TumourSite:
    """One hospital of the ``brain_tumour_mpmri`` family.

    Attributes:
        name: Site name, also its folder name.
        num_cases: Number of cases.
        acquisition: The scanner's acquisition, shared by the four sequences.
        tissue_contrast: Scales each tissue's signal difference from 0.5 (1 = nominal).
        sequence_gamma: Exponent per channel (T1, T1ce, T2, FLAIR) on the tissue signals: the
            site's own sequence parameters (TR, TE, TI) bend each contrast differently.
        high_grade_fraction: Fraction of high-grade tumours, in ``[0, 1]``.
        tumour_radius: ``(min, max)`` radius of the tumour core as fractions of the image size.
    """

    family: ClassVar[str] = "brain_tumour_mpmri"
    name: str
    num_cases: int
    acquisition: Acquisition
    tissue_contrast: float
    sequence_gamma: tuple[float, float, float, float]
    high_grade_fraction: float
    tumour_radius: tuple[float, float]

    def __post_init__(self) -> None:
        if self.num_cases < 1 or not 0.3 <= self.tissue_contrast <= 2.0:
            raise ValueError("num_cases must be >= 1 and tissue_contrast in [0.3, 2]")
        if len(self.sequence_gamma) != len(CHANNELS) or not all(0.3 <= g <= 3 for g in self.sequence_gamma):
            raise ValueError(
                f"sequence_gamma needs {len(CHANNELS)} values in [0.3, 3], got {self.sequence_gamma}"
            )
        if not 0 <= self.high_grade_fraction <= 1:
            raise ValueError(f"high_grade_fraction must be in [0, 1], got {self.high_grade_fraction}")
        if not 0 < self.tumour_radius[0] <= self.tumour_radius[1] < 0.25:
            raise ValueError(f"tumour_radius must satisfy 0 < min <= max < 0.25, got {self.tumour_radius}")

    @property
    def description(self) -> str:
        """One line for ``dataset.json``."""
        return "medfed synthetic multi-parametric brain MRI (T1, T1ce, T2, FLAIR)"

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
        """One head with a glioma, in four sequences; 1 mm isotropic."""
        phantom = make_phantom(rng, shape, 0.0, self.tumour_radius)
        high_grade = bool(rng.random() < self.high_grade_fraction)
        tissue = _with_tumour(rng, phantom, high_grade, self.tumour_radius)
        subject = Phantom(tissue=tissue, head=phantom.head)
        texture = tissue_texture(rng, shape)
        bent = _SIGNAL ** np.array(self.sequence_gamma)[:, None]
        signal = np.clip(0.5 + self.tissue_contrast * (bent - 0.5), 0.02, None)
        signal[:, Tissue.BACKGROUND] = 0.0
        image = np.stack(
            [
                acquire(render_tissue(subject, row, texture), subject.head, self.acquisition, rng)
                for row in signal
            ]
        )
        return SyntheticCase(image, _LABEL_OF[tissue], int(high_grade), (1.0,) * len(shape))


def _with_tumour(
    rng: np.random.Generator, phantom: Phantom, high_grade: bool, radius: tuple[float, float]
) -> np.ndarray:
    """The phantom's tissue map with a tumour core and its edema painted into the brain."""
    shape = phantom.tissue.shape
    coords = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    white = np.argwhere(phantom.tissue == Tissue.WHITE_MATTER)
    centre = white[rng.integers(len(white))]
    core_radius = 2.0 * rng.uniform(*radius)
    distance = np.sqrt(sum((c - c[tuple(centre)]) ** 2 for c in coords))
    core = distance / core_radius * (1 + 0.2 * smooth_noise(rng, shape, shape[0] / 16))
    edema = (
        distance / (core_radius * rng.uniform(1.5, 2.3)) * (1 + 0.3 * smooth_noise(rng, shape, shape[0] / 10))
    )
    brain = np.isin(phantom.tissue, [Tissue.GREY_MATTER, Tissue.WHITE_MATTER, Tissue.VENTRICLE])
    tissue = phantom.tissue.copy()
    tissue[brain & (edema < 1) & (phantom.tissue != Tissue.VENTRICLE)] = TumourTissue.EDEMA
    if high_grade:
        tissue[brain & (core < 1)] = TumourTissue.ENHANCING
        tissue[brain & (core < rng.uniform(0.4, 0.65))] = TumourTissue.NECROSIS
    else:
        tissue[brain & (core < 1)] = TumourTissue.NON_ENHANCING
    return tissue


DEFAULT_SITES: tuple[TumourSite, ...] = (
    # 3T, clean, mild bias: the largest site.
    TumourSite(
        "hospital_a",
        300,
        Acquisition(1000.0, 1.0, 0.15, 0.02, 0.5),
        1.1,
        (1.0, 1.0, 1.0, 1.0),
        0.8,
        (0.07, 0.12),
    ),
    # 1.5T: lower tissue contrast, strong gamma and bias field.
    TumourSite(
        "hospital_b",
        250,
        Acquisition(600.0, 1.4, 0.45, 0.04, 0.7),
        0.8,
        (1.6, 1.3, 0.7, 1.8),
        0.7,
        (0.07, 0.12),
    ),
    # Old 1.5T: noisy and blurred, flat contrast, smaller tumours, more low-grade cases.
    TumourSite(
        "hospital_c",
        150,
        Acquisition(300.0, 0.85, 0.25, 0.07, 1.0),
        0.7,
        (0.6, 0.8, 1.5, 0.6),
        0.5,
        (0.05, 0.10),
    ),
    # 3T with high contrast and a compressive gamma.
    TumourSite(
        "hospital_d",
        200,
        Acquisition(2000.0, 0.75, 0.3, 0.03, 0.6),
        1.25,
        (1.3, 0.7, 1.2, 1.0),
        0.9,
        (0.07, 0.13),
    ),
    # The unseen hospital: its own scale, gamma, bias and noise.
    TumourSite(
        "hospital_e",
        150,
        Acquisition(1800.0, 1.25, 0.35, 0.05, 0.8),
        0.9,
        (0.8, 1.2, 1.8, 1.4),
        0.75,
        (0.06, 0.12),
    ),
)
"""Five hospitals; ``hospital_e`` is meant to stay unseen."""


@FAMILIES.register("brain_tumour_mpmri")
def brain_tumour_mpmri() -> Family:
    """Multi-parametric brain MRI with BraTS-like tumour sub-regions, 2D or 3D."""
    return Family(
        name="brain_tumour_mpmri",
        channels=CHANNELS,
        labels=("background", "edema", "non-enhancing tumour", "enhancing tumour"),
        binary_label="whole tumour",
        dims=(2, 3),
        sites=DEFAULT_SITES,
        unseen_site="hospital_e",
    )
