"""A deployed site keeps its private strategy state across a restart of its client."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from medfed.data import DEFAULT_SITES, generate_federation, load_site
from medfed.deployment.job import SiteJob
from medfed.deployment.site_builder import STATE_FILE, SiteBuilder, SiteOptions
from medfed.orchestration.site import cpu_weights
from medfed.types import TrainTask


def _job(strategy: str) -> str:
    job = SiteJob(
        seed=3,
        model={
            "name": "unet",
            "params": {
                "spatial_dims": 2,
                "in_channels": 1,
                "channels": [4, 8],
                "strides": [2],
                "num_res_units": 0,
            },
        },
        training={"local_epochs": 1, "batch_size": 4},
        strategy={"name": strategy},
    )
    return json.dumps(job.model_dump(mode="json"), sort_keys=True)


def test_scaffold_control_variate_survives_a_client_restart_for_the_same_job_only(tmp_path: Path) -> None:
    site = replace(DEFAULT_SITES[0], num_cases=4)
    data = load_site(
        site.name, generate_federation([site], tmp_path / "data", image_size=16, dims=2, seed=0)[site.name]
    )
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
