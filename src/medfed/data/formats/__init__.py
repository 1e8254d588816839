"""Loaders of real site data, one module per on-disk format, registered by name in ``FORMATS``.

Every loader has the signature ``load(site: str, path: Path) -> SiteData`` and raises
``DataError`` naming the site and the file at fault.
"""

from __future__ import annotations

from medfed.data.cases import SiteData
from medfed.data.formats import dicom, msd, npz, png
from medfed.registry import Registry

FORMATS: Registry[SiteData] = Registry("data format")
FORMATS.register("msd")(msd.load)
FORMATS.register("dicom")(dicom.load)
FORMATS.register("png")(png.load)
FORMATS.register("npz")(npz.load)

__all__ = ["FORMATS"]
