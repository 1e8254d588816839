"""`medfed predict`: predictions land voxel for voxel on the input's own grid (after the run's
resampling and reorientation), in NIfTI with the input's affine, DICOM SEG over the source
series, PNG, or a CSV of class probabilities."""

from __future__ import annotations

import csv
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pytest
import torch
from builders import tiny_simulation
from dicom_helpers import write_series
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.config.loading import parse_config
from medfed.data.formats.geometry import Volume
from medfed.data.preprocessing import Preprocessing
from medfed.errors import DataError
from medfed.export.model import TrainedModel, load_trained_model
from medfed.inference.run import predict_path
from medfed.inference.scans import Scan, read_scan
from medfed.inference.segment import predict_scan
from medfed.models import network_spec
from medfed.simulator import run_simulation

SPACING = (2.0, 1.0, 3.0)


class Threshold(nn.Module):
    """Class 1 wherever the normalised image exceeds ``level`` (2: the phantom's bright box, about
    4 standard deviations above the tissue): a network whose right answer is known."""

    def __init__(self, level: float = 2.0) -> None:
        super().__init__()
        self.level = level

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(image[:, :1]), image[:, :1] - self.level], dim=1)


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """An off-centre bright box (value 100) in dimmer tissue (value 20): ``(image, box)``."""
    image = np.zeros((20, 16, 12), np.float32)
    image[2:18, 2:14, 1:11] = 20.0
    box = np.zeros(image.shape, bool)
    box[3:9, 4:8, 2:6] = True
    image[box] = 100.0
    return image, box


def _model(preprocessing: Preprocessing, level: float = 2.0) -> TrainedModel:
    params = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2}
    return TrainedModel(
        spec=network_spec("unet", params),
        weights={},
        network=Threshold(level),
        image_shape=None,
        description="threshold",
        preprocessing=preprocessing,
    )


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float(np.sum(a & b)) / float(a.sum() + b.sum())


@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, 1, 1), (-1, -1, 1), (1, -1, -1)])
def test_a_resampled_reoriented_prediction_lands_on_the_stored_grid(flips: tuple[int, int, int]) -> None:
    image, box = _phantom()
    axes = [slice(None, None, flip) for flip in flips]
    stored = np.ascontiguousarray(image[tuple(axes)])  # the same scan stored flipped (e.g. LAS)
    affine = np.diag([*(flip * size for flip, size in zip(flips, SPACING, strict=True)), 1.0])
    affine[:3, 3] = [
        0.0 if flip > 0 else (n - 1) * size for flip, n, size in zip(flips, image.shape, SPACING, strict=True)
    ]
    scan = Scan("case", Path("case.nii.gz"), "nifti", Volume(stored, affine))
    settings = Preprocessing(spacing=(1.5, 1.5, 1.5), crop_foreground=True)
    prediction = predict_scan(Threshold(), scan, task="segmentation", preprocessing=settings)
    assert prediction.labels is not None and prediction.labels.shape == stored.shape
    truth = box[tuple(axes)]
    assert _dice(prediction.labels == 1, truth) > 0.9
    found = np.argwhere(prediction.labels == 1).mean(axis=0)
    assert np.abs(found - np.argwhere(truth).mean(axis=0)).max() < 0.75  # not mirrored, not shifted


def test_nifti_predictions_keep_the_input_affine_and_shape(tmp_path: Path) -> None:
    image, box = _phantom()
    affine = np.diag([-2.0, 1.0, 3.0, 1.0])  # stored LAS
    affine[:3, 3] = [40.0, -8.0, 5.0]
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "patient.nii.gz")
    written = predict_path(
        _model(Preprocessing(spacing=(1.5, 1.5, 1.5))), tmp_path / "patient.nii.gz", tmp_path / "out"
    )
    (segmentation,) = written[0].files
    saved = nib.load(segmentation)
    assert segmentation.name == "patient_seg.nii.gz"
    assert np.allclose(saved.affine, affine) and saved.shape == image.shape
    assert _dice(np.asarray(saved.dataobj) == 1, box) > 0.9


def test_a_dicom_series_gets_a_seg_that_references_its_instances(tmp_path: Path) -> None:
    write_series(tmp_path / "series", depth=4)
    scan = read_scan(tmp_path / "series")
    written = predict_path(
        _model(Preprocessing(spacing=(1.0, 1.0, 1.0)), level=0.5), tmp_path / "series", tmp_path / "out"
    )
    nifti, seg_file = written[0].files
    seg = hd.seg.segread(seg_file)
    sources = [str(dataset.SOPInstanceUID) for dataset in scan.dicom]
    assert sorted(uid for _, _, uid in seg.get_source_image_uids()) == sorted(sources)
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=sources, segment_numbers=[1])
    labels = np.asarray(nib.load(nifti).dataobj)  # (rows, columns, slices) of the series
    assert np.array_equal(frames[..., 0], np.moveaxis(labels, -1, 0))
    assert np.allclose(nib.load(nifti).affine, scan.volume.affine)
    assert (labels == 1).any() and (labels == 0).any()


def test_a_scan_the_model_cannot_take_is_one_error(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), tmp_path / "two.nii.gz")
    with pytest.raises(DataError, match=r"^file '.*two.nii.gz': images have 2 channels, the model takes 1$"):
        predict_path(_model(Preprocessing()), tmp_path / "two.nii.gz", tmp_path / "out")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "flat.png")
    with pytest.raises(DataError, match="2D, the model is 3D"):
        predict_path(_model(Preprocessing()), tmp_path / "flat.png", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^file '.*empty': holds no NIfTI"):
        predict_path(_model(Preprocessing()), tmp_path / "empty", tmp_path / "out")


TINY = tiny_simulation()


def test_predict_command_over_a_folder_of_png_and_nifti(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_simulation(parse_config({**TINY, "output_dir": str(run)}))
    scans = tmp_path / "scans"
    scans.mkdir()
    Image.fromarray((np.arange(18 * 20).reshape(18, 20) % 251).astype(np.uint8)).save(scans / "a.png")
    affine = np.diag([0.7, 0.7, 1.0, 1.0])
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random((20, 16, 1), np.float32), affine), scans / "b.nii"
    )
    result = CliRunner().invoke(
        app, ["predict", "-m", str(run), "-i", str(scans), "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert np.asarray(Image.open(tmp_path / "out" / "a_seg.png")).shape == (18, 20)
    saved = nib.load(tmp_path / "out" / "b_seg.nii.gz")
    assert saved.shape == (20, 16, 1) and np.allclose(saved.affine, affine)
    assert set(np.unique(np.asarray(saved.dataobj))) <= {0, 1}


def test_classification_writes_probabilities(tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = {**TINY, "task": "classification", "model": {"name": "resnet"}, "output_dir": str(run)}
    run_simulation(parse_config(config))
    model = load_trained_model(run)
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(tmp_path / "x.png")
    predict_path(model, tmp_path / "x.png", tmp_path / "out")
    rows = list(csv.DictReader((tmp_path / "out" / "predictions.csv").open()))
    assert [row["scan"] for row in rows] == ["x"]
    probabilities = [float(rows[0][f"p{index}"]) for index in range(model.spec.out_channels)]
    assert abs(sum(probabilities) - 1.0) < 1e-4
    assert int(rows[0]["predicted_class"]) == int(np.argmax(probabilities))
