"""``attack:`` in ``medfed simulate``: one scaled site ruins FedAvg, the median keeps the model
close to the clean run; the report names clean, attacked and defended runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.errors import ConfigError
from medfed.orchestration.experiments import plan_experiments
from medfed.orchestration.federation_data import prepare_data
from medfed.orchestration.simulation import ExperimentRunner

TINY = tiny_simulation(
    data={"synthetic": {"image_size": 32, "cases_scale": 0.2}, "unseen_site": None},
    strategies=[{"name": "fedavg"}, {"name": "fedavg", "label": "median", "robust": {"rule": "median"}}],
    attack={"sites": ["hospital_c"], "kind": "scale", "factor": 100.0},
)


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return sum(float((a[k] - b[k]).double().norm() ** 2) for k in a if a[k].is_floating_point()) ** 0.5


def test_one_scaled_site_ruins_fedavg_but_not_the_median(tmp_path: Path) -> None:
    config = parse_config({**TINY, "output_dir": str(tmp_path)})
    data = prepare_data(config.data, tmp_path / "data", seed=0)
    runner = ExperimentRunner(config, data, tmp_path)
    planned = {e.name: e for e in plan_experiments(config, data)}
    assert {name: e.attacked for name, e in planned.items()} == {
        "fedavg": True,
        "fedavg-clean": False,
        "median": True,
        "median-clean": False,
    }
    final = {name: runner.run(planned[name]).state.weights for name in ("fedavg", "fedavg-clean", "median")}
    start = runner.new_model().state_dict()
    clean_step = _distance(final["fedavg-clean"], start)
    assert _distance(final["fedavg"], final["fedavg-clean"]) > 5 * clean_step
    assert _distance(final["median"], final["fedavg-clean"]) < clean_step


def test_attack_sites_must_be_training_sites(tmp_path: Path) -> None:
    config = parse_config({**TINY, "attack": {"sites": ["hospital_z"], "kind": "sign_flip"}})
    data = prepare_data(config.data, tmp_path / "data", seed=0)
    with pytest.raises(ConfigError, match="hospital_z"):
        plan_experiments(config, data)


def test_a_clean_twin_may_not_clash_with_a_label() -> None:
    raw = {**TINY, "strategies": [{"name": "fedavg"}, {"name": "fedprox", "label": "fedavg-clean"}]}
    with pytest.raises(ConfigError, match="appear twice"):
        parse_config(raw)
