"""The exported bundle of a slice-trained network runs it on every slice of a volume."""

from __future__ import annotations

import torch
from monai.inferers import SliceInferer

from medfed.data.preprocessing import PaddedInferer, Preprocessing, SliceWiseInferer
from medfed.export.model import TrainedModel, inference_config
from medfed.models import build_model, network_spec


def test_a_slice_trained_network_is_exported_with_a_slice_inferer_that_matches_medfed() -> None:
    params = {"spatial_dims": 2, "channels": (4, 8), "strides": (2,), "num_res_units": 0}
    network = build_model("unet", params, seed=0).eval()
    model = TrainedModel(
        spec=network_spec("unet", params),
        weights=network.state_dict(),
        network=network,
        image_shape=(8, 6, 4),
        description="test",
        preprocessing=Preprocessing(slices="coronal", divisible_by=2),
    )
    config = inference_config(model)["inferer"]
    assert config == {
        "_target_": "SliceInferer",
        "spatial_dim": 1,
        "roi_size": [8, 4],
        "sw_batch_size": 4,
        "overlap": 0.25,
    }
    volume = torch.randn(1, 1, 8, 6, 4)
    arguments = {key: value for key, value in config.items() if key != "_target_"}
    with torch.no_grad():
        exported = SliceInferer(**arguments)(volume, network)
        medfed = SliceWiseInferer(PaddedInferer(2), 1)(volume, network)
    torch.testing.assert_close(exported, medfed, rtol=1e-5, atol=1e-5)
