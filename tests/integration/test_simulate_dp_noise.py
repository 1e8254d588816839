"""A DP simulation repeats bit for bit only on the explicit opt-in, and then says NOT PRIVATE."""

from pathlib import Path
from typing import Any

import torch
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.orchestration.checkpoint import latest_checkpoint, load_checkpoint
from medfed.simulator import run_simulation
from medfed.types import Weights

DP_TINY = tiny_simulation(
    data={"synthetic": {"image_size": 64, "cases_scale": 0.35}},
    model={"params": {"num_res_units": 0}},
    training={"batch_size": 8, "lr": 0.003},
)


def _run(output_dir: Path, **privacy: Any) -> tuple[Weights, str]:
    dp = {"dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0}, "epsilon": 50.0, **privacy}
    outcome = run_simulation(parse_config({**DP_TINY, "output_dir": str(output_dir), "privacy": dp}))
    final = load_checkpoint(latest_checkpoint(outcome.run_dir / "checkpoints" / "fedavg"))
    return final.server.weights, outcome.report.read_text()


def _same(a: Weights, b: Weights) -> bool:
    return all(torch.equal(a[key], b[key]) for key in a)


def test_only_the_opt_in_repeats_a_dp_run_and_its_report_says_not_private(tmp_path: Path) -> None:
    first, report = _run(tmp_path / "a", reproducible_noise=True)
    again, _ = _run(tmp_path / "b", reproducible_noise=True)
    assert _same(first, again)
    assert "NOT PRIVATE" in report
    private, private_report = _run(tmp_path / "c")
    assert not _same(private, first) and "NOT PRIVATE" not in private_report
