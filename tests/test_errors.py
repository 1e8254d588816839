"""Every medfed error pickles whole (it may be raised in a Ray actor and arrive in the driver)."""

from __future__ import annotations

import pickle

import pytest

from medfed.errors import DataError, MedfedError, PolicyRefusal, PrivacyBudgetExceeded, UpdateRejected


@pytest.mark.parametrize(
    "error",
    [
        DataError("site-a", "/data/a/case-1.nii.gz", "truncated file"),
        PrivacyBudgetExceeded("site-a", spent=7.9, would_spend=8.2, budget=8.0),
        UpdateRejected("site-b", "not finite"),
        PolicyRefusal("site-c", ["no CKKS", "too few sites"]),
    ],
)
def test_an_error_survives_pickling_with_its_message_and_fields(error: MedfedError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error) and copy.__dict__ == error.__dict__
