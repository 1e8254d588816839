"""A trained network applied to one scan: the run's preprocessing, the run's inferer, and the
prediction mapped back onto the scan's stored grid (the resampling and crop inverted by MONAI,
then the canonical axis order undone)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose
from torch import nn

from medfed.data.formats.geometry import oriented, stored_order, voxel_spacing
from medfed.data.preprocessing import Preprocessing, as_meta, case_transforms, inferer
from medfed.device import default_device
from medfed.inference.scans import Scan
from medfed.training.evaluation import predict
from medfed.types import Task


@dataclass(frozen=True)
class Prediction:
    """What a network says about one scan.

    Attributes:
        labels: Segmentation: class per voxel, ``uint8``, on the scan's stored grid ``(X, Y, Z)``;
            ``None`` for classification.
        probabilities: Classification: one probability per class; segmentation: the mean
            probability of each class over the scan.
    """

    labels: np.ndarray | None
    probabilities: np.ndarray


@torch.no_grad()
def predict_scan(network: nn.Module, scan: Scan, *, task: Task, preprocessing: Preprocessing) -> Prediction:
    """Applies ``network`` to ``scan`` as the run trained it.

    The scan is reoriented to RAS, resampled, normalised and cropped as ``preprocessing`` says;
    a segmentation runs through the run's inferer (sliding windows or padding), its class
    probabilities are resampled back (MONAI inverts the spatial transforms), and the arg-max is
    returned in the scan's own axis order.
    """
    array, _ = oriented(scan.volume)
    spacing = voxel_spacing(scan.volume) if scan.has_geometry else None
    prepare = Compose(case_transforms(preprocessing, ["image"]))
    image = prepare({"image": as_meta(array, spacing)})["image"]
    device = default_device()
    if task == "classification":
        probabilities = predict(network, torch.as_tensor(image)[None], device)[0]
        return Prediction(None, probabilities.numpy())
    probabilities = predict(network, torch.as_tensor(image)[None], device, inferer(preprocessing))[0]
    restored = MetaTensor(probabilities, affine=image.affine.clone(), meta=dict(image.meta))
    restored.applied_operations = copy.deepcopy(image.applied_operations)
    on_scan_grid = prepare.inverse({"image": restored})["image"]
    labels = torch.as_tensor(on_scan_grid).argmax(dim=0).numpy().astype(np.uint8)
    mean = torch.as_tensor(on_scan_grid).flatten(1).mean(dim=1).numpy()
    return Prediction(stored_order(labels, scan.volume), mean)
