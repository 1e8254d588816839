"""``medfed simulate`` on every non-default synthetic family: one tiny round end to end, with a
model whose output channels follow the family's classes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from builders import one_torch_thread, tiny_simulation

from medfed.config.loading import parse_config
from medfed.data import Case, SiteData
from medfed.errors import ConfigError
from medfed.models import build_model
from medfed.orchestration.checkpoint import latest_checkpoint, load_checkpoint
from medfed.orchestration.federation_data import MAX_CLASSES, FederationData
from medfed.simulator import run_simulation


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.mark.parametrize(
    ("family", "size", "channels", "classes", "unseen"),
    [
        ("skin_lesion", 24, 3, 2, "clinic_e"),
        ("kidney_ct", 16, 1, 3, "hospital_e"),
        ("brain_tumour_mpmri", 24, 4, 4, "hospital_e"),
    ],
)
def test_one_round_per_family(
    tmp_path: Path, family: str, size: int, channels: int, classes: int, unseen: str
) -> None:
    config = parse_config(
        tiny_simulation(
            tmp_path,
            data={"synthetic": {"family": family, "image_size": size, "cases_scale": 0.02}, "augment": False},
        )
    )
    assert config.data.unseen_site == unseen
    outcome = run_simulation(config)
    (row,) = outcome.summary
    assert unseen in row.per_site and len(row.per_site) == 5
    assert all(0.0 <= dice <= 1.0 for dice in row.per_site.values())
    latest = latest_checkpoint(outcome.run_dir / "checkpoints" / "fedavg")
    assert latest is not None
    weights = load_checkpoint(latest).server.weights
    params = {"channels": [4, 8], "strides": [2], "in_channels": channels, "out_channels": classes}
    params["spatial_dims"] = 3 if family == "kidney_ct" else 2
    build_model("unet", params, seed=0).load_state_dict(weights)  # strict: shapes must match


def _case(mask_max: int | None, label: int | None) -> Case:
    mask = None if mask_max is None else np.full((1, 2, 2), mask_max, dtype=np.int64)
    return Case("c", np.zeros((1, 2, 2), np.float32), mask, label, Path("c"))


def test_num_classes_counts_every_site_the_unseen_one_included() -> None:
    train = {"a": SiteData("a", (_case(1, 0), _case(0, 1)))}
    unseen = SiteData("u", (_case(3, 2),))
    data = FederationData(train=train, test={"a": SiteData("a", (_case(0, 0),))}, unseen=unseen)
    assert data.num_classes("segmentation") == 4
    assert data.num_classes("classification") == 3
    empty = FederationData(train={"a": SiteData("a", (_case(0, 0),))}, test={}, unseen=None)
    assert empty.num_classes("segmentation") == empty.num_classes("classification") == 2


def test_num_classes_is_bounded() -> None:
    data = FederationData(train={"a": SiteData("a", (_case(MAX_CLASSES, 0),))}, test={}, unseen=None)
    with pytest.raises(ConfigError, match="set model.params.out_channels"):
        data.num_classes("segmentation")
