"""``STRATEGIES``: every strategy by name, e.g. ``STRATEGIES.create("fedadam", lr=0.1)``."""

from __future__ import annotations

from medfed.registry import Registry
from medfed.strategies.base import Strategy
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.fedbn import FedBN
from medfed.strategies.fedopt import FedAdagrad, FedAdam, FedYogi
from medfed.strategies.fedprox import FedProx
from medfed.strategies.scaffold import Scaffold

STRATEGIES: Registry[Strategy] = Registry("strategy")

for _cls in (FedAvg, FedProx, FedBN, FedAdam, FedYogi, FedAdagrad, Scaffold):
    STRATEGIES.register(_cls.name)(_cls)
