"""The built-in data as a hospital would hand them over: every site in its own size, voxel
spacing, axis orientation and storage format.

``generate_realistic_federation`` generates each site of a family as ``medfed.data.synthetic``
does, at its own image size (the field of view kept, so the voxel spacing changes with it), then
stores it as one of:

- ``nifti_ras``: MSD layout, NIfTI stored RAS (as generated);
- ``nifti_las``: MSD layout, NIfTI stored LAS (first axis mirrored, affine to match);
- ``dicom``: one folder per case holding a DICOM MR series (one file per slice, stored as
  unsigned 16-bit with RescaleSlope/Intercept) and ``mask.nii.gz`` on the series' grid;
- ``dicom_rle``: the same, RLE Lossless compressed.

Sites take these in turn (the fourth, by default the unseen site, compressed DICOM), with sizes
``SIZE_FACTORS`` times the configured image size. The loaders bring them all back to one RAS
axis order; the study's preprocessing (``medfed.data.preprocessing``) to one grid.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, RLELossless, generate_uid

from medfed.data.families import FAMILIES, SiteSpec
from medfed.data.formats.common import read_nifti
from medfed.data.synthetic import generate_site

Storage = Literal["nifti_ras", "nifti_las", "dicom", "dicom_rle"]
STORAGES: tuple[Storage, ...] = ("nifti_ras", "nifti_las", "dicom", "dicom_rle")
SIZE_FACTORS = (1.0, 1.25, 0.75, 1.125)
"""Image side of each site, relative to the configured ``image_size`` (site k uses entry k mod 4)."""


def generate_realistic_federation(
    sites: Sequence[SiteSpec],
    out_dir: Path,
    *,
    image_size: int = 64,
    dims: int = 2,
    seed: int = 0,
    binary: bool = False,
) -> dict[str, Path]:
    """Generates each site at its own size and spacing and stores it in its own format.

    Args:
        sites: The sites (site k gets ``STORAGES[k % 4]`` and ``SIZE_FACTORS[k % 4]``).
        out_dir: Parent folder of the site folders.
        image_size: The reference image side; the field of view of every site is that of
            this size at the family's spacing.
        dims: 2 or 3.
        seed: Seed of the federation.
        binary: Merge every foreground label into label 1.

    Returns:
        Site folder by site name.
    """
    paths = {}
    for index, site in enumerate(sites):
        if index % len(STORAGES) >= 2 and len(FAMILIES.create(site.family).channels) > 1:
            raise ValueError(f"family '{site.family}' has several channels; a DICOM series holds one")
        size = max(16, round(image_size * SIZE_FACTORS[index % len(SIZE_FACTORS)]))
        storage = STORAGES[index % len(STORAGES)]
        with tempfile.TemporaryDirectory(dir=out_dir if out_dir.exists() else None) as staging:
            generated = generate_site(
                site, Path(staging), image_size=size, dims=dims, seed=seed, binary=binary
            )
            paths[site.name] = _store(generated, out_dir / site.name, storage, image_size / size)
    return paths


def _store(msd: Path, target: Path, storage: Storage, zoom: float) -> Path:
    """Moves a generated MSD site to ``target`` in ``storage``, its voxels ``zoom`` times larger."""
    if target.exists():
        shutil.rmtree(target)
    index = json.loads((msd / "dataset.json").read_text())
    if storage.startswith("nifti"):
        shutil.copytree(msd, target)
        spatial = 2 if index["tensorImageSize"] == "2D" else 3
        for path in sorted(target.glob("*Tr/*.nii.gz")):
            _rewrite_nifti(path, zoom, spatial, mirror=storage == "nifti_las")
        return target
    target.mkdir(parents=True)
    rows = []
    for entry in index["training"]:
        case = Path(entry["label"]).name.removesuffix(".nii.gz")
        image = read_nifti(msd.name, msd / "imagesTr" / f"{case}_0000.nii.gz")
        mask = read_nifti(msd.name, msd / "labelsTr" / f"{case}.nii.gz")
        affine = _zoomed(image.affine, zoom, 3 if image.array.shape[2] > 1 else 2)
        series_affine = _write_series(
            target / case, image.array.astype(np.float32), affine, compressed=storage == "dicom_rle"
        )
        nib.save(nib.Nifti1Image(mask.array.astype(np.uint8), series_affine), target / case / "mask.nii.gz")
        rows.append((case, entry["class"]))
    with (target / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("case_id", "label"), *rows])
    return target


def _rewrite_nifti(path: Path, zoom: float, spatial: int, *, mirror: bool) -> None:
    stored = read_nifti(path.parent.parent.name, path)
    array, affine = stored.array, _zoomed(stored.affine, zoom, spatial)
    if mirror:  # the same voxels stored from left to right: first axis reversed, affine to match
        array = np.ascontiguousarray(array[::-1])
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, array.shape[0] - 1
        affine = affine @ flip
    nib.save(nib.Nifti1Image(array, affine), path)


def _zoomed(affine: np.ndarray, zoom: float, spatial: int) -> np.ndarray:
    """``affine`` with voxels ``zoom`` times larger along the first ``spatial`` axes (a 2D
    file's third axis, one slice, unchanged)."""
    scaled = np.array(affine, dtype=np.float64)
    scaled[:3, :spatial] *= zoom
    return scaled


def _write_series(folder: Path, volume: np.ndarray, affine: np.ndarray, *, compressed: bool) -> np.ndarray:
    """Writes ``volume`` ``(X, Y, Z)`` (RAS, ``affine`` diagonal) as one DICOM slice per ``Z``;
    returns the RAS affine of the series' ``(rows, columns, slices)`` grid (the mask's grid)."""
    folder.mkdir(parents=True)
    spacing = np.abs(np.diag(affine)[:3])
    low, high = float(volume.min()), float(volume.max())
    slope = (high - low) / 65535.0 or 1.0
    stored = np.round((volume - low) / slope).astype(np.uint16)
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    for k in range(volume.shape[2]):
        ds = _slice(stored[:, :, k], spacing, k, series=series, study=study, frame=frame)
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{low:.10g}"
        if compressed:
            ds.compress(RLELossless)
        ds.save_as(folder / f"IM{k:04d}", enforce_file_format=True)  # no extension, as PACS exports
    # rows run along the volume's X (towards R: LPS -x), columns along Y (towards A: LPS -y)
    series_affine = np.diag([spacing[0], spacing[1], spacing[2], 1.0])
    if volume.shape[2] == 1:  # one slice: its normal (row x column direction) points inferior
        series_affine[2, 2] = -spacing[2]
    return series_affine


def _slice(
    pixels: np.ndarray, spacing: np.ndarray, k: int, *, series: str, study: str, frame: str
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientIdentityRemoved = "Synthetic^Patient", series[-8:], "YES"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "MR", 1, k + 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [0.0, -1.0, 0.0, -1.0, 0.0, 0.0]  # row, then column, cosines (LPS)
    ds.ImagePositionPatient = [0.0, 0.0, float(k * spacing[2])]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]  # between rows, between columns
    ds.SliceThickness = float(spacing[2])
    ds.set_pixel_data(pixels, photometric_interpretation="MONOCHROME2", bits_stored=16)
    return ds
