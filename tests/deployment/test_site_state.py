"""A deployed site keeps its private strategy state across a restart of its client."""

from __future__ import annotations

from pathlib import Path

import torch
from site_helpers import tiny_job, tiny_site

from medfed.deployment.site_builder import STATE_FILE, SiteBuilder, SiteOptions
from medfed.orchestration.site import cpu_weights
from medfed.types import TrainTask


def _job(strategy: str) -> str:
    return tiny_job(3, strategy={"name": strategy})


def test_scaffold_control_variate_survives_a_client_restart_for_the_same_job_only(tmp_path: Path) -> None:
    data = tiny_site(tmp_path, 4)
    options = SiteOptions(state_dir=tmp_path / "state")
    job = _job("scaffold")
    first = SiteBuilder(data, options)
    local = first.site_for(job)
    zeros = {name: torch.zeros_like(t) for name, t in cpu_weights(local.model).items()}
    local.train(TrainTask(round=1, weights=cpu_weights(local.model), extra={"control": zeros}))
    first.save_state()
    control = local.state.extra["control"]
    assert any(tensor.abs().sum() > 0 for tensor in control.values())
    assert (tmp_path / "state" / STATE_FILE).exists()

    restarted = SiteBuilder(data, options).site_for(job)
    assert restarted.state.extra.keys() == {"control"}
    for name, tensor in control.items():
        torch.testing.assert_close(restarted.state.extra["control"][name], tensor, rtol=0, atol=0)
    assert not SiteBuilder(data, options).site_for(_job("fedavg")).state.extra  # another job: fresh
