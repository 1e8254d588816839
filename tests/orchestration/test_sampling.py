import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.orchestration.sampling import sample_sites

SITES = [f"site{i}" for i in range(10)]


def test_fraction_and_min_sites_set_the_count() -> None:
    assert len(sample_sites(SITES, fraction=0.3, min_sites=1, seed=0, round=1)) == 3
    assert len(sample_sites(SITES, fraction=0.1, min_sites=4, seed=0, round=1)) == 4
    assert sample_sites(SITES, fraction=1.0, min_sites=1, seed=0, round=1) == sorted(SITES)


@settings(derandomize=True, max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), round=st.integers(1, 1000))
def test_sampling_is_reproducible_and_order_free(seed: int, round: int) -> None:
    first = sample_sites(SITES, fraction=0.5, min_sites=1, seed=seed, round=round)
    again = sample_sites(list(reversed(SITES)), fraction=0.5, min_sites=1, seed=seed, round=round)
    assert first == again
    assert len(set(first)) == 5 and set(first) <= set(SITES)


def test_rounds_differ() -> None:
    draws = {tuple(sample_sites(SITES, fraction=0.3, min_sites=1, seed=7, round=r)) for r in range(1, 20)}
    assert len(draws) > 5


def test_bad_fraction_is_rejected() -> None:
    with pytest.raises(ValueError, match="fraction"):
        sample_sites(SITES, fraction=0.0, min_sites=1, seed=0, round=1)
