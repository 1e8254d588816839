from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medfed.data import Case, SiteData, split_cases


def make_site(labels: list[int | None]) -> SiteData:
    image = np.zeros((1, 4, 4), np.float32)
    cases = tuple(Case(f"c{i}", image, None, label, Path(f"c{i}")) for i, label in enumerate(labels))
    return SiteData("s", cases)


def ids(site: SiteData) -> list[str]:
    return [c.case_id for c in site.cases]


def test_same_seed_same_split_and_other_seed_differs() -> None:
    site = make_site([0, 1] * 20)
    assert split_cases(site, 0.25, seed=3) == split_cases(site, 0.25, seed=3)
    assert ids(split_cases(site, 0.25, seed=3)[1]) != ids(split_cases(site, 0.25, seed=4)[1])


def test_stratified_by_label() -> None:
    site = make_site([1] * 30 + [0] * 10)
    train, test = split_cases(site, 0.2, seed=0)
    assert len(test.cases) == 8
    assert sorted(c.label for c in test.cases) == [0, 0] + [1] * 6


def test_keeps_order_and_name() -> None:
    site = make_site([None] * 10)
    train, test = split_cases(site, 0.3, seed=0)
    assert train.name == test.name == "s"
    assert ids(train) == sorted(ids(train), key=lambda x: int(x[1:]))


def test_one_case_goes_to_train() -> None:
    train, test = split_cases(make_site([1]), 0.5, seed=0)
    assert len(train.cases) == 1 and not test.cases


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        split_cases(make_site([0, 1]), fraction, seed=0)


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.sampled_from([0, 1, 2]), min_size=2, max_size=40),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
)
def test_disjoint_cover_and_both_sides_nonempty(labels: list[int], fraction: float, seed: int) -> None:
    train, test = split_cases(make_site(labels), fraction, seed=seed)
    assert set(ids(train)).isdisjoint(ids(test))
    assert sorted(ids(train) + ids(test)) == sorted(ids(make_site(labels)))
    assert train.cases and test.cases
