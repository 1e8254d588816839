"""Site data: synthetic multi-site generator, loaders per format, validation, torch datasets."""

from medfed.data.cases import Case, SiteData, split_cases
from medfed.data.dataset import build_dataset
from medfed.data.formats import FORMATS
from medfed.data.loading import load_site
from medfed.data.synthetic import (
    DEFAULT_SITES,
    FAMILIES,
    ScannerProfile,
    SyntheticSite,
    family_sites,
    generate_federation,
    generate_site,
)

__all__ = [
    "DEFAULT_SITES",
    "FAMILIES",
    "FORMATS",
    "Case",
    "ScannerProfile",
    "SiteData",
    "SyntheticSite",
    "build_dataset",
    "family_sites",
    "generate_federation",
    "generate_site",
    "load_site",
    "split_cases",
]
