"""``data.synthetic.family``: validated names, dimensions and the family's unseen site."""

from __future__ import annotations

from typing import Any

import pytest

from medfed.config.loading import parse_config
from medfed.errors import ConfigError


def _data(**synthetic: Any) -> Any:
    return parse_config({"data": {"synthetic": synthetic}}).data


def test_default_family_keeps_the_demo() -> None:
    data = parse_config({}).data
    assert data.synthetic is not None
    assert (data.synthetic.family, data.synthetic.dims, data.unseen_site) == (
        "brain_lesion",
        2,
        "hospital_d",
    )


@pytest.mark.parametrize(
    ("family", "dims", "unseen"),
    [
        ("skin_lesion", 2, "clinic_e"),
        ("kidney_ct", 3, "hospital_e"),
        ("brain_tumour_mpmri", 2, "hospital_e"),
    ],
)
def test_family_sets_default_dims_and_unseen_site(family: str, dims: int, unseen: str) -> None:
    data = _data(family=family)
    assert data.synthetic.dims == dims and data.unseen_site == unseen


def test_explicit_unseen_site_wins() -> None:
    raw = {"data": {"synthetic": {"family": "skin_lesion"}, "unseen_site": None}}
    assert parse_config(raw).data.unseen_site is None


@pytest.mark.parametrize(
    ("synthetic", "message"),
    [
        ({"family": "kidney_ct", "dims": 2}, "family 'kidney_ct' supports dims [3], not 2"),
        ({"family": "skin_lesion", "dims": 3}, "family 'skin_lesion' supports dims [2], not 3"),
        ({"family": "liver"}, "unknown synthetic data family 'liver'; valid names: brain_lesion, "),
        (
            {"family": "brain_tumour_mpmri", "dims": 3, "image_size": 160},
            "image_size must be <= 128",
        ),
    ],
)
def test_bad_family_settings_are_one_line_errors(synthetic: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="data.synthetic") as error:
        _data(**synthetic)
    assert message in str(error.value)
