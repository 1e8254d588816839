"""Accounting: epsilon equals Opacus's own accountants; calibration spends the budget exactly."""

from __future__ import annotations

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from medfed.privacy.dp.accounting import Budget, Mechanism, calibrate_noise, epsilon_spent, merged


def test_rdp_epsilon_equals_opacus_for_the_same_steps() -> None:
    history = [Mechanism(1.1, 0.25, 12), Mechanism(1.1, 0.25, 12), Mechanism(0.9, 0.5, 4)]
    opacus = RDPAccountant()
    opacus.history = [(1.1, 0.25, 24), (0.9, 0.5, 4)]
    assert epsilon_spent(history, delta=1e-5, accountant="rdp") == pytest.approx(opacus.get_epsilon(1e-5), rel=1e-12)


def test_prv_epsilon_equals_opacus_for_the_same_steps() -> None:
    opacus = PRVAccountant()
    opacus.history = [(1.0, 0.1, 50)]
    ours = epsilon_spent([Mechanism(1.0, 0.1, 20), Mechanism(1.0, 0.1, 30)], delta=1e-5, accountant="prv")
    assert ours == pytest.approx(opacus.get_epsilon(1e-5), rel=1e-9)


def test_merging_sums_steps_of_equal_mechanisms_only() -> None:
    assert merged([Mechanism(1.0, 0.5, 2), Mechanism(2.0, 0.5, 1), Mechanism(1.0, 0.5, 3)]) == [
        Mechanism(1.0, 0.5, 5),
        Mechanism(2.0, 0.5, 1),
    ]


def test_no_release_spends_nothing() -> None:
    assert epsilon_spent([], delta=1e-5, accountant="rdp") == 0.0


@pytest.mark.parametrize("accountant", ["rdp"])
def test_calibrated_noise_spends_the_budget_within_one_percent_and_never_more(accountant: str) -> None:
    budget = Budget(epsilon=4.0, delta=1e-5)
    steps = 5 * 2 * 4  # rounds x local epochs x batches per epoch
    z = calibrate_noise(budget, sample_rate=0.25, steps=steps, accountant=accountant)
    spent = epsilon_spent([Mechanism(z, 0.25, steps)], delta=budget.delta, accountant=accountant)
    assert budget.epsilon * 0.99 <= spent <= budget.epsilon


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epsilon": 0.0, "delta": 1e-5}, "epsilon"),
        ({"epsilon": 1.0, "delta": 1.0}, "delta"),
    ],
)
def test_bad_budgets_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Budget(**kwargs)


def test_bad_mechanisms_are_rejected() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        Mechanism(1.0, 0.0, 1)
    with pytest.raises(ValueError, match="noise_multiplier"):
        Mechanism(0.0, 0.5, 1)
