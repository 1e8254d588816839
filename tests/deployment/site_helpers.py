"""Builders shared by the deployment tests (imported by name: ``tests/deployment`` is on
``sys.path``): one small generated site and the JSON of a job for a tiny 2D U-Net."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from medfed.data import DEFAULT_SITES, SiteData, generate_federation, load_site
from medfed.deployment.job import SiteJob

TINY_UNET: dict[str, Any] = {
    "spatial_dims": 2,
    "in_channels": 1,
    "channels": [4, 8],
    "strides": [2],
    "num_res_units": 0,
}
"""A 2D U-Net of a few hundred parameters."""


def tiny_site(folder: Path, num_cases: int) -> SiteData:
    """The first default site with ``num_cases`` 16x16 cases, generated under ``folder/data``."""
    site = replace(DEFAULT_SITES[0], num_cases=num_cases)
    path = generate_federation([site], folder / "data", image_size=16, dims=2, seed=0)[site.name]
    return load_site(site.name, path)


def tiny_job(
    seed: int, *, model: dict[str, Any] | None = None, training: dict[str, Any] | None = None, **sections: Any
) -> str:
    """The site job JSON the server sends: ``TINY_UNET`` (updated by ``model``), one local
    epoch of batch 4 (updated by ``training``), and any other ``SiteJob`` sections."""
    job = SiteJob(
        seed=seed,
        model={"name": "unet", "params": {**TINY_UNET, **(model or {})}},
        training={"local_epochs": 1, "batch_size": 4, **(training or {})},
        **sections,
    )
    return json.dumps(job.model_dump(mode="json"), sort_keys=True)
