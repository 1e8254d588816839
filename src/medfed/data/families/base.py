"""What a synthetic data family is: its channels, labels, dimensions and default sites, and the
one case a site draws at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from medfed.registry import Registry


@dataclass(frozen=True)
class SyntheticCase:
    """One generated case, before it is written to disk.

    Attributes:
        image: float32 array ``(C, H, W[, D])``, one entry per channel of the family.
        mask: uint8 array ``(H, W[, D])`` of label values ``0..K``.
        label: Case-level class (e.g. 1 = lesion present, or the family's malignant/high-grade
            class).
        spacing: Voxel size in mm along each spatial axis.
    """

    image: np.ndarray
    mask: np.ndarray
    label: int
    spacing: tuple[float, ...]


class SiteSpec(Protocol):
    """A synthetic site of some family: a frozen dataclass with at least these members."""

    family: ClassVar[str]

    @property
    def name(self) -> str:
        """The site's name, also its folder name."""
        ...

    @property
    def num_cases(self) -> int:
        """How many cases the site has."""
        ...

    @property
    def description(self) -> str:
        """One line for ``dataset.json``."""
        ...

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> SyntheticCase:
        """Draws one case of spatial ``shape`` from ``rng``."""
        ...


@dataclass(frozen=True)
class Family:
    """A family of synthetic multi-site data sets.

    Attributes:
        name: Registry name (``data.synthetic.family``).
        channels: Channel names, in file order (``_0000``, ``_0001``...).
        labels: Label names by value (``labels[0]`` is the background).
        binary_label: Name of label 1 when every foreground label is merged into it.
        dims: Spatial dimensionalities the family supports; the first is the default.
        sites: Default sites at ``cases_scale`` 1; they differ in scanner and population.
        unseen_site: The default site that never trains.
    """

    name: str
    channels: tuple[str, ...]
    labels: tuple[str, ...]
    binary_label: str
    dims: tuple[int, ...]
    sites: tuple[SiteSpec, ...]
    unseen_site: str

    def __post_init__(self) -> None:
        names = [site.name for site in self.sites]
        if self.unseen_site not in names:
            raise ValueError(f"unseen_site '{self.unseen_site}' is not one of {names}")
        if any(type(site).family != self.name for site in self.sites):
            raise ValueError(f"every default site of '{self.name}' must belong to it")

    def label_names(self, *, binary: bool) -> Sequence[str]:
        """Label names by value, with foreground merged into one label when ``binary``."""
        return (self.labels[0], self.binary_label) if binary else self.labels


FAMILIES: Registry[Family] = Registry("synthetic data family")
"""Families by name; each module of ``medfed.data.families`` registers one."""
