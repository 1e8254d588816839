"""Core types shared by every layer: weights, messages between server and sites, and state.

Every message and every saved state carries ``SCHEMA_VERSION`` so that a site and a server of
different medfed versions detect the mismatch instead of misreading each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

SCHEMA_VERSION = 1

Weights = dict[str, torch.Tensor]
"""A model's parameters and buffers by name, as in ``nn.Module.state_dict()``."""

Scalar = bool | int | float | str
"""A configuration or metric value that travels next to the tensors."""

Task = Literal["segmentation", "classification"]
"""What the model learns: a voxel-wise mask or a case-level class."""

AGGREGATE_SITE = "<secure-aggregate>"
"""The ``site`` of a result that already holds several sites' aggregated updates (a secure
round's mean); no real site can have this name (site names use letters, digits, ``_.-``)."""

AGGREGATE_SITES_METRIC = "secagg.num_sites"
"""Metric of an ``AGGREGATE_SITE`` result: how many sites' updates are in it."""


@dataclass(frozen=True)
class TrainTask:
    """What the server asks one site to do in one round.

    Attributes:
        round: 1-based round number.
        weights: The global model to start local training from.
        config: Local-training settings for this round (e.g. ``{"local_epochs": 1}``).
        extra: Strategy tensors sent with the model (e.g. SCAFFOLD's server control variate).
    """

    round: int
    weights: Weights
    config: Mapping[str, Scalar] = field(default_factory=dict)
    extra: Mapping[str, Weights] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class TrainResult:
    """What one site sends back after local training.

    Attributes:
        site: The site's name.
        round: The round this result answers.
        weights: The site's model after local training (full weights, not a delta).
        num_samples: Training cases the site used; the weight of this result in averages.
        metrics: Training metrics such as ``{"loss": 0.31}``.
        extra: Strategy tensors returned with the model (e.g. SCAFFOLD's control-variate delta).
    """

    site: str
    round: int
    weights: Weights
    num_samples: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    extra: Mapping[str, Weights] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ServerState:
    """Everything the server needs to continue a run: resume is loading this.

    Attributes:
        round: Number of completed rounds (0 before the first round).
        weights: The current global model.
        extra: Strategy state by group name (e.g. ``{"m": ..., "v": ...}`` for FedAdam).
    """

    round: int
    weights: Weights
    extra: Mapping[str, Weights] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class SiteState:
    """What a site keeps between rounds; it never leaves the site.

    Attributes:
        weights: The site's model after its last local training (empty before the first round).
        extra: Strategy state by group name (e.g. ``{"control": c_i}`` for SCAFFOLD).
    """

    weights: Weights = field(default_factory=dict)
    extra: Mapping[str, Weights] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
