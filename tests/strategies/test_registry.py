"""STRATEGIES: lookup by name and hyperparameter validation."""

from __future__ import annotations

import pytest

from medfed.errors import UnknownNameError
from medfed.strategies import STRATEGIES, FedAdam, FedYogi, Scaffold


def test_all_strategies_are_registered() -> None:
    assert STRATEGIES.names() == [
        "fedadagrad",
        "fedadam",
        "fedavg",
        "fedbn",
        "fedprox",
        "fedyogi",
        "scaffold",
    ]


def test_create_passes_hyperparameters() -> None:
    strategy = STRATEGIES.create("fedadam", lr=0.1)
    assert isinstance(strategy, FedAdam) and strategy.lr == 0.1
    assert isinstance(STRATEGIES.create("scaffold", server_lr=0.5), Scaffold)


def test_unknown_name_lists_valid_names() -> None:
    valid = "fedadagrad, fedadam, fedavg, fedbn, fedprox, fedyogi, scaffold"
    with pytest.raises(UnknownNameError, match=f"unknown strategy 'nope'; valid names: {valid}"):
        STRATEGIES.create("nope")


@pytest.mark.parametrize(
    ("name", "kwargs", "argument"),
    [
        ("fedprox", {"mu": -0.1}, "mu"),
        ("fedadam", {"lr": 0.0}, "lr"),
        ("fedyogi", {"lr": -1.0}, "lr"),
        ("fedadagrad", {"lr": float("nan")}, "lr"),
        ("fedadam", {"beta1": 1.0}, "beta1"),
        ("fedadam", {"beta1": -0.1}, "beta1"),
        ("fedyogi", {"beta2": 1.5}, "beta2"),
        ("fedadam", {"tau": 0.0}, "tau"),
        ("scaffold", {"server_lr": 0.0}, "server_lr"),
    ],
)
def test_bad_hyperparameters_are_rejected_naming_the_argument(
    name: str, kwargs: dict[str, float], argument: str
) -> None:
    with pytest.raises(ValueError, match=f"^{argument} must"):
        STRATEGIES.create(name, **kwargs)


def test_hyperparameters_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        FedYogi(0.1)  # type: ignore[misc]
