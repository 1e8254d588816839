"""Accounting: epsilon equals Opacus's own accountants and, by default, the tight PLD bound of
Google's dp-accounting; calibration spends the budget exactly, after earlier releases too."""

from __future__ import annotations

import dp_accounting
import pytest
from dp_accounting import pld
from opacus.accountants import PRVAccountant, RDPAccountant

from medfed.config.schema import PrivacyConfig
from medfed.privacy.dp.accounting import (
    DEFAULT_ACCOUNTANT,
    Accountant,
    Budget,
    Mechanism,
    calibrate_noise,
    epsilon_spent,
    merged,
)


def test_rdp_epsilon_equals_opacus_for_the_same_steps() -> None:
    history = [Mechanism(1.1, 0.25, 12), Mechanism(1.1, 0.25, 12), Mechanism(0.9, 0.5, 4)]
    opacus = RDPAccountant()
    opacus.history = [(1.1, 0.25, 24), (0.9, 0.5, 4)]
    assert epsilon_spent(history, delta=1e-5, accountant="rdp") == pytest.approx(
        opacus.get_epsilon(1e-5), rel=1e-12
    )


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


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_calibrated_noise_spends_the_budget_within_one_percent_and_never_more(accountant: str) -> None:
    budget = Budget(epsilon=4.0, delta=1e-5)
    steps = 5 * 2 * 4  # rounds x local epochs x batches per epoch
    z = calibrate_noise(budget, sample_rate=0.25, steps=steps, accountant=accountant)
    spent = epsilon_spent([Mechanism(z, 0.25, steps)], delta=budget.delta, accountant=accountant)
    assert budget.epsilon * 0.99 <= spent <= budget.epsilon


def test_calibration_counts_what_earlier_releases_spent() -> None:
    budget, earlier = Budget(epsilon=4.0, delta=1e-5), [Mechanism(2.0, 0.25, 10)]
    z = calibrate_noise(budget, sample_rate=0.5, steps=10, accountant="rdp", spent=earlier)
    assert z > calibrate_noise(budget, sample_rate=0.5, steps=10, accountant="rdp")
    spent = epsilon_spent([*earlier, Mechanism(z, 0.5, 10)], delta=budget.delta, accountant="rdp")
    assert budget.epsilon * 0.99 <= spent <= budget.epsilon
    with pytest.raises(ValueError, match="leaves too little"):
        calibrate_noise(Budget(1.0, 1e-5), sample_rate=0.5, steps=10, accountant="rdp", spent=earlier * 5)


def _pld_epsilon(mechanism: Mechanism, delta: float) -> float:
    """Google's dp-accounting, privacy loss distributions (Doroshenko et al. 2022): tight."""
    accountant = pld.PLDAccountant(value_discretization_interval=1e-4)
    event = dp_accounting.PoissonSampledDpEvent(
        mechanism.sample_rate, dp_accounting.GaussianDpEvent(mechanism.noise_multiplier)
    )
    accountant.compose(event, mechanism.steps)
    return float(accountant.get_epsilon(delta))


@pytest.mark.parametrize(
    ("mechanism", "delta"),
    [
        (Mechanism(1.0, 1 / 3, 30), 1e-5),
        (Mechanism(1.1, 0.01, 1000), 1e-5),
        (Mechanism(2.0, 0.5, 20), 1e-6),
    ],
)
def test_the_default_accountant_is_within_two_percent_of_the_tight_pld_bound(
    mechanism: Mechanism, delta: float
) -> None:
    assert DEFAULT_ACCOUNTANT is Accountant.PRV and PrivacyConfig().accountant == "prv"
    tight = _pld_epsilon(mechanism, delta)
    assert (
        tight * 0.999
        <= epsilon_spent([mechanism], delta=delta, accountant=DEFAULT_ACCOUNTANT)
        <= tight * 1.02
    )
    assert (
        epsilon_spent([mechanism], delta=delta, accountant="rdp") > tight * 1.05
    )  # why RDP is no longer the default


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
