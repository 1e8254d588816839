"""Federated strategies, one module each, created by name through ``STRATEGIES``."""

from medfed.strategies.base import LocalHooks, Strategy
from medfed.strategies.fedavg import FedAvg
from medfed.strategies.fedbn import FedBN
from medfed.strategies.fedopt import FedAdagrad, FedAdam, FedOpt, FedYogi
from medfed.strategies.fedprox import FedProx
from medfed.strategies.registry import STRATEGIES
from medfed.strategies.scaffold import Scaffold

__all__ = [
    "STRATEGIES",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedBN",
    "FedOpt",
    "FedProx",
    "FedYogi",
    "LocalHooks",
    "Scaffold",
    "Strategy",
]
