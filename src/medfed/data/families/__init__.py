"""Synthetic data families by name: ``brain_lesion`` (the default), ``skin_lesion``,
``kidney_ct`` and ``brain_tumour_mpmri`` (see each module)."""

from medfed.data.families import brain_lesion, brain_tumour, kidney_ct, skin_lesion
from medfed.data.families.base import FAMILIES, Family, SiteSpec, SyntheticCase
from medfed.data.families.brain_lesion import DEFAULT_SITES, SyntheticSite

__all__ = [
    "DEFAULT_SITES",
    "FAMILIES",
    "Family",
    "SiteSpec",
    "SyntheticCase",
    "SyntheticSite",
    "brain_lesion",
    "brain_tumour",
    "kidney_ct",
    "skin_lesion",
]
