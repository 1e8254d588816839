from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_helpers import refused

from medfed.data.validation import checked_case, checked_image, checked_mask, checked_site
from medfed.errors import DataError, DataProblems

SRC = Path("/data/site/case.nii.gz")


def case(case_id: str, *, mask: bool = True, label: int | None = 1, channels: int = 1):
    image = np.ones((channels, 4, 4))
    return checked_case("s", case_id, image, np.zeros((4, 4)) if mask else None, label, Path(case_id))


def test_image_becomes_float32() -> None:
    assert checked_image("s", SRC, np.ones((1, 4, 4), np.uint16)).dtype == np.float32


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_image(value: float) -> None:
    image = np.ones((1, 4, 4))
    image[0, 1, 1] = value
    with refused("1 NaN or infinite", "s", SRC):
        checked_image("s", SRC, image)


def test_image_of_wrong_rank() -> None:
    with pytest.raises(DataError, match="shape"):
        checked_image("s", SRC, np.ones((4, 4)))


def test_mask_gains_channel_and_int64() -> None:
    mask = checked_mask("s", SRC, np.ones((4, 4), np.float32), (4, 4))
    assert mask.shape == (1, 4, 4) and mask.dtype == np.int64


@pytest.mark.parametrize(
    "mask, match",
    [
        (np.full((4, 4), 0.5), "non-integer"),
        (np.full((4, 4), np.nan), "non-integer"),
        (np.full((4, 4), -1), "negative"),
        (np.zeros((4, 5)), "does not match"),
    ],
)
def test_bad_masks(mask: np.ndarray, match: str) -> None:
    with refused(match, "s", SRC):
        checked_mask("s", SRC, mask, (4, 4))


def test_empty_site() -> None:
    with refused("no cases", "s", SRC.parent):
        checked_site("s", SRC.parent, [])


def test_label_missing_while_others_have_one() -> None:
    with refused("'b' has no label but 'a' has one", "s", Path("b")):
        checked_site("s", SRC.parent, [case("a"), case("b", label=None)])


def test_mask_missing_while_others_have_one() -> None:
    with refused("'a' has no mask but other cases have one", "s", Path("a")):
        checked_site("s", SRC.parent, [case("a", mask=False), case("b")])


def test_channel_count_must_agree() -> None:
    with pytest.raises(DataError, match="channels"):
        checked_site("s", SRC.parent, [case("a"), case("b", channels=2)])


def test_duplicate_case_ids() -> None:
    with pytest.raises(DataError, match="appears twice"):
        checked_site("s", SRC.parent, [case("a"), case("a")])


def test_every_case_unlike_the_first_is_its_own_line() -> None:
    cases = [case("a"), case("b", channels=2), case("c"), case("d", label=None), case("a")]
    with pytest.raises(DataProblems) as info:
        checked_site("s", SRC.parent, cases)
    assert [p.path for p in info.value.problems if isinstance(p, DataError)] == [
        Path("b"),
        Path("d"),
        Path("a"),
    ]


def test_a_first_case_without_mask_is_named_once() -> None:
    with pytest.raises(DataError, match="'a' has no mask but other cases have one"):
        checked_site("s", SRC.parent, [case("a", mask=False), case("b"), case("c")])
