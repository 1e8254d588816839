"""The Python API: ``medfed.simulate`` hands back a DataFrame and nn.Modules; hooks change what
is trained; a re-run with ``overwrite`` replaces the run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from builders import tiny_simulation
from torch import nn

import medfed
from medfed.api import resolve_config
from medfed.errors import CheckpointError, ConfigError
from medfed.orchestration.run_dir import clear_run

TINY = tiny_simulation(
    data={"synthetic": {"cases_scale": 0.2}}, model={"params": {"num_res_units": 0, "norm": "batch"}}
)


def _tiny(tmp_path: Path, **settings: Any) -> dict[str, Any]:
    return {**TINY, "output_dir": str(tmp_path / "run"), **settings}


def test_importing_medfed_stays_cheap_and_exports_the_api_lazily() -> None:
    code = "import sys, medfed; print([m for m in ('torch', 'pandas', 'monai') if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
    assert medfed.simulate.__module__ == "medfed.api"
    assert all(hasattr(medfed, name) for name in medfed.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = medfed.nothing  # type: ignore[attr-defined]


def test_a_config_may_be_a_mapping_a_path_or_none_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("federation: {rounds: 4}\n")
    assert resolve_config(None).federation.rounds == 12
    assert resolve_config(path, ["seed=3"]).federation.rounds == 4
    mapping = {"federation": {"rounds": 2}}
    config = resolve_config(mapping, ["federation.rounds=5"])
    assert config.federation.rounds == 5 and mapping == {"federation": {"rounds": 2}}
    assert resolve_config(config, ["seed=1"]).seed == 1
    with pytest.raises(ConfigError, match="federation.rounds: Input should be greater"):
        resolve_config({"federation": {"rounds": 0}})
    with pytest.raises(ConfigError, match="got int"):
        resolve_config(3)  # type: ignore[arg-type]


def test_clearing_a_run_removes_its_files_only(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "fedavg").mkdir(parents=True)
    for name in ("config.yaml", "metrics.csv", "notes.txt"):
        (tmp_path / name).write_text("x")
    clear_run(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]
    clear_run(tmp_path / "missing")  # nothing there: nothing to do


def test_clearing_a_run_of_several_seeds_removes_each_seeds_run(tmp_path: Path) -> None:
    for folder in ("seed_0/checkpoints/fedavg", "seed_12", "seed_x", "seed_3/data"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("config.yaml", "seed_0/config.yaml", "seed_12/config.yaml", "seed_x/config.yaml"):
        (tmp_path / name).write_text("x")
    clear_run(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seed_3", "seed_x"]  # no run in them


def test_simulate_returns_metrics_and_models_and_a_rerun_needs_overwrite(tmp_path: Path) -> None:
    settings = _tiny(tmp_path, strategies=[{"name": "fedavg"}, {"name": "fedbn"}])
    results = medfed.simulate(settings)
    metrics = results.metrics
    assert list(metrics.columns) == ["experiment", "round", "site", "split", "metric", "value", "seed"]
    assert set(metrics["seed"]) == {0}  # the run's seed
    assert set(metrics["experiment"]) == {"fedavg", "fedbn"} and set(metrics["round"]) == {1}
    dice = metrics[(metrics.metric == "dice") & (metrics.split == "test")]
    assert len(dice) == 2 * 3 and dice["value"].between(0, 1).all()
    assert results.metric == "dice" and list(results.summary["experiment"]) == ["fedavg", "fedbn"]
    assert set(results.models) == {"fedavg", "fedbn"}
    assert all(isinstance(model, nn.Module) and not model.training for model in results.models.values())
    assert list(results.site_models) == ["fedbn"]  # FedAvg personalises nothing
    assert sorted(results.site_models["fedbn"]) == ["hospital_a", "hospital_b", "hospital_c"]
    image = torch.zeros(1, 1, 16, 16)
    assert results.models["fedavg"](image).shape == (1, 2, 16, 16)

    with pytest.raises(CheckpointError, match="already holds a run"):
        medfed.simulate(settings)
    with pytest.raises(ConfigError, match="is a segmentation network"):  # checked before deleting
        medfed.simulate(settings, overwrite=True, overrides=["task=classification"])
    assert (tmp_path / "run" / "checkpoints" / "fedbn").is_dir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    again = medfed.simulate(settings, overwrite=True, overrides=["strategies=[{name: fedavg}]"])
    assert set(again.metrics["experiment"]) == {"fedavg"}
    assert not (tmp_path / "run" / "checkpoints" / "fedbn").exists()
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


class TinyNet(nn.Module):
    """A one-layer segmentation network."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels, classes, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(images)


def test_the_hooks_replace_model_loss_augmentation_and_step(tmp_path: Path) -> None:
    contexts: list[medfed.ModelContext] = []
    augmented: list[str] = []
    steps: list[int] = []

    def model_fn(context: medfed.ModelContext) -> nn.Module:
        contexts.append(context)
        return TinyNet(context.in_channels, context.out_channels)

    def loss_fn(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.0 * outputs.sum() + 5.0  # no gradient: the model must not move

    def transform(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        augmented.append("yes")
        return sample

    def train_step(model: nn.Module, batch: Mapping[str, torch.Tensor], loss: Any) -> torch.Tensor:
        steps.append(len(batch["image"]))
        return loss(model(batch["image"]), batch["label"])

    results = medfed.simulate(
        _tiny(tmp_path, data={**TINY["data"], "augment": False}, strategies=[{"name": "fedavg"}]),
        model_fn=model_fn,
        loss_fn=loss_fn,
        transform=transform,
        train_step=train_step,
    )
    model = results.models["fedavg"]
    assert isinstance(model, TinyNet)
    assert contexts[0] == medfed.ModelContext("segmentation", 2, 1, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(results.config.seed)
        initial = TinyNet(1, 2)
    for trained, start in zip(model.state_dict().values(), initial.state_dict().values(), strict=True):
        torch.testing.assert_close(trained, start)  # FedAvg of unchanged models (float rounding)
    metrics = results.metrics
    losses = metrics[(metrics.metric == "loss") & (metrics.split == "train")]["value"]
    assert len(losses) == 3 and (losses == 5.0).all()
    assert augmented and steps  # augmentation applied though data.augment is false
