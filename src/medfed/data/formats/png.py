"""Loader for a folder of PNG images with optional masks and a labels CSV.

Layout::

    <site>/images/<name>.png   greyscale or RGB(A); RGBA and palette images become RGB
    <site>/masks/<name>.png    optional; greyscale class ids 0..K
    <site>/labels.csv          optional, columns filename,label (filename as in images/)

The case id is the file name without ``.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from medfed.data.cases import Case, SiteData
from medfed.data.formats.common import lookup_label, read_labels_csv
from medfed.data.validation import checked_case, checked_site, loaded_cases
from medfed.errors import DataError

IMAGES_DIR = "images"
MASKS_DIR = "masks"
LABELS_FILE = "labels.csv"


def load(site: str, path: Path) -> SiteData:
    """Loads a PNG site folder.

    Args:
        site: The site's name.
        path: Folder holding ``images/``.

    Returns:
        The site's cases, sorted by file name.

    Raises:
        DataError: If a file is unreadable, or a mask or label is missing while the site
            declares masks (a ``masks/`` folder) or labels (``labels.csv``).
    """
    images_dir = path / IMAGES_DIR
    if not images_dir.is_dir():
        raise DataError(site, images_dir, f"PNG sites need an '{IMAGES_DIR}/' folder")
    files = sorted(images_dir.glob("*.png"))
    csv_path = path / LABELS_FILE
    labels = (
        read_labels_csv(site, csv_path, "filename", {f.name for f in files}) if csv_path.is_file() else None
    )
    masks_dir = path / MASKS_DIR if (path / MASKS_DIR).is_dir() else None
    cases = loaded_cases(
        files, lambda file: _load_case(site, file, masks_dir, lookup_label(site, labels, file.name, csv_path))
    )
    return checked_site(site, path, cases)


def _load_case(site: str, file: Path, masks_dir: Path | None, label: int | None) -> Case:
    """Reads one image, and its mask when the site has a masks folder."""
    image = read_png(site, file)
    image = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    mask, mask_path = None, None
    if masks_dir is not None:
        mask_path = masks_dir / file.name
        if not mask_path.is_file():
            reason = f"mask of image '{file.name}' not found in {MASKS_DIR}/"
            raise DataError(site, mask_path, reason)
        mask = read_png(site, mask_path)
        if mask.ndim != 2:
            reason = f"mask must be a greyscale PNG, got shape {mask.shape}"
            raise DataError(site, mask_path, reason)
    return checked_case(site, file.stem, image, mask, label, file, mask_path)


def read_png(site: str, path: Path) -> np.ndarray:
    """Reads a PNG as ``(H, W)`` (greyscale) or ``(H, W, 3)`` (colour)."""
    try:
        with Image.open(path) as stored:
            if stored.mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr"):
                return np.asarray(stored.convert("RGB" if stored.mode != "LA" else "L"))
            return np.asarray(stored)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        reason = f"cannot read PNG ({type(exc).__name__}: {exc}); it may be truncated or corrupt"
        raise DataError(site, path, reason) from exc
