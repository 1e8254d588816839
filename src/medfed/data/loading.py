"""Loading a site from disk in a named or auto-detected format."""

from __future__ import annotations

from pathlib import Path

from medfed.data.cases import SiteData
from medfed.data.formats import FORMATS, dicom, msd, png
from medfed.data.patients import with_patients
from medfed.errors import DataError, UnknownNameError


def load_site(
    site: str, path: Path, format: str | None = None, *, allow_identified: bool = False
) -> SiteData:
    """Loads one site's data.

    Args:
        site: The site's name (used in error messages and as ``SiteData.name``).
        path: The site's folder, or its ``.npz`` file.
        format: A name in ``FORMATS`` (``"msd"``, ``"dicom"``, ``"png"``, ``"npz"``), or
            ``None`` to detect it from the folder's content.
        allow_identified: Accept DICOM files that still name their patient (see
            ``medfed.data.formats.dicom.load``).

    Returns:
        The site's validated cases, each with its patient (``medfed.data.patients``).

    Raises:
        DataError: If the path does not exist, the format is unknown or cannot be detected,
            or the data are invalid.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(site, path, "site path does not exist")
    name = format if format is not None else detect_format(site, path)
    if name == "dicom":
        return with_patients(dicom.load(site, path, allow_identified=allow_identified), path)
    try:
        loader = FORMATS.get(name)
    except UnknownNameError as exc:
        raise DataError(site, path, str(exc)) from None
    return with_patients(loader(site, path), path)


def detect_format(site: str, path: Path) -> str:
    """The format name of a site folder or file, judged by its content.

    ``dataset.json`` means ``msd``; a ``.npz`` file (or a folder with one) means ``npz``; an
    ``images/`` folder means ``png``; sub-folders holding DICOM files (``DICM`` at byte 128,
    whatever their extension) mean ``dicom``.

    Raises:
        DataError: If no format matches; the message lists the known formats.
    """
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
    elif (path / msd.INDEX_FILE).is_file():
        return "msd"
    elif any(path.glob("*.npz")):
        return "npz"
    elif (path / png.IMAGES_DIR).is_dir():
        return "png"
    elif any(dicom.is_dicom(file) for file in path.glob("*/*")):
        return "dicom"
    raise DataError(
        site,
        path,
        f"cannot detect the data format; pass one of: {', '.join(FORMATS.names())} "
        f"(msd: {msd.INDEX_FILE}; npz: a .npz file; png: {png.IMAGES_DIR}/ folder; "
        f"dicom: one sub-folder of DICOM files per case, optional {dicom.MASK_FILE})",
    )
