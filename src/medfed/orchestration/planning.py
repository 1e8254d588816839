"""A simulation's study plan: each site's fingerprint, received as a server receives it (a JSON
record checked field by field), combined into one plan (``medfed.data.study_plan``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from medfed.config.schema import SimulationConfig
from medfed.data import FAMILIES, SiteData
from medfed.data.fingerprint import Fingerprint, fingerprint_site
from medfed.data.study_plan import StudyPlan, check_sites_agree, plan_study
from medfed.orchestration.federation_data import FederationData


def study_plan(config: SimulationConfig, data: FederationData) -> StudyPlan:
    """The plan from the training sites' training cases; the unseen site is checked to agree.

    Raises:
        DataError: A site whose channels or dimensionality differ from the others', named.
        ConfigError: ``preprocessing.modalities`` does not name every channel.
    """
    received = [_received(site, config) for site in data.train.values()]
    if data.unseen is not None:
        check_sites_agree([*received, _received(data.unseen, config)])
    preprocessing = config.preprocessing
    return plan_study(
        received,
        task=config.task,
        size_multiple=preprocessing.settings(config.model).divisible_by,
        modalities=_modalities(config),
        max_patch_voxels=preprocessing.max_patch_voxels,
    )


def _received(site: SiteData, config: SimulationConfig) -> Fingerprint:
    """``site``'s fingerprint after the trip a deployed site's takes: to JSON and back, checked."""
    record = json.dumps(fingerprint_site(site, task=config.task, seed=config.seed).to_dict())
    return Fingerprint.from_dict(json.loads(record), site=site.name)


def _modalities(config: SimulationConfig) -> Sequence[str] | None:
    """``preprocessing.modalities``, else the synthetic family's channel names, else ``None``."""
    names = config.preprocessing.modalities
    if names is None and config.data.synthetic is not None:
        return FAMILIES.create(config.data.synthetic.family).channels
    return names
