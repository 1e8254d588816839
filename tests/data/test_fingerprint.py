"""A site's fingerprint: hand-computed statistics, the JSON round trip, hostile records refused."""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medfed.data import Case, SiteData
from medfed.data.fingerprint import Fingerprint, fingerprint_site
from medfed.errors import DataError


def _known_site() -> SiteData:
    """Two 2D cases, one channel: 2x3 (spacing 1 x 2 mm) and 4x3 (spacing 3 x 2 mm)."""
    first = np.array([[[0.0, 10.0, 20.0], [30.0, 40.0, 0.0]]], dtype=np.float32)
    first_mask = np.array([[[0, 1, 1], [2, 0, 0]]], dtype=np.int64)
    second = np.full((1, 4, 3), 5.0, dtype=np.float32)
    second_mask = np.zeros((1, 4, 3), dtype=np.int64)  # nothing labelled: non-zero voxels count
    return SiteData(
        "h1",
        (
            Case("a", first, first_mask, 1, Path("a"), spacing=(1.0, 2.0)),
            Case("b", second, second_mask, 0, Path("b"), spacing=(3.0, 2.0)),
        ),
    )


def test_fingerprint_of_a_known_site() -> None:
    fingerprint = fingerprint_site(_known_site(), task="segmentation")
    assert (fingerprint.site, fingerprint.num_cases, fingerprint.channels, fingerprint.spatial_dims) == (
        "h1",
        2,
        1,
        2,
    )
    assert fingerprint.spacing == (2.0, 2.0)  # medians of (1, 3) and (2, 2)
    assert fingerprint.size == (3.0, 3.0)  # medians of (2, 4) and (3, 3)
    assert fingerprint.extent == (7.0, 6.0)  # medians of (2, 12) mm and (6, 6) mm
    # foreground: the labelled voxels 10, 20, 30 of case a, all twelve 5s of case b
    values = np.array([10.0, 20.0, 30.0, *[5.0] * 12])
    (channel,) = fingerprint.intensity
    assert channel.percentiles == pytest.approx(tuple(np.percentile(values, [0.5, 50, 99.5])))
    assert channel.percentiles[1] == 5.0
    assert channel.mean == pytest.approx(120.0 / 15)
    assert channel.std == pytest.approx(float(values.std()))
    # 18 voxels: 15 background, 2 of class 1, 1 of class 2
    assert fingerprint.class_fractions == pytest.approx((15 / 18, 2 / 18, 1 / 18))
    assert fingerprint.declared_classes is None
    assert fingerprint_site(_known_site(), task="classification").class_fractions == (0.5, 0.5)
    declared = replace(_known_site(), classes={0: "background", 1: "kidney", 2: "tumour", 3: "cyst"})
    assert fingerprint_site(declared, task="segmentation").declared_classes == 4


def test_the_record_survives_json_and_holds_no_voxels() -> None:
    fingerprint = fingerprint_site(_known_site(), task="segmentation")
    record = json.loads(json.dumps(fingerprint.to_dict()))
    assert Fingerprint.from_dict(record, site="h1") == fingerprint
    assert "site" not in record
    assert len(json.dumps(record)) < 600  # a few numbers, whatever the size of the data


def _record() -> dict[str, Any]:
    return fingerprint_site(_known_site(), task="segmentation").to_dict()


def _set(path: str, value: Any) -> dict[str, Any]:
    record = copy.deepcopy(_record())
    *parents, last = path.split(".")
    target: Any = record
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return record


_DELETE = object()


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (_set("spacing.0", math.nan), "spacing[0]"),
        (_set("spacing.1", math.inf), "spacing[1]"),
        (_set("spacing.0", -1.0), "spacing[0]"),
        (_set("spacing.0", 1e9), "spacing[0]"),
        (_set("spacing", [1.0, 1.0, 1.0]), "spacing"),
        (_set("size.0", 1e12), "size[0]"),
        (_set("size.0", "3"), "size[0]"),
        (_set("size.0", 10**400), "size[0]"),
        (_set("num_cases", 10**12), "num_cases"),
        (_set("num_cases", True), "num_cases"),
        (_set("channels", 2), "intensity"),
        (_set("channels", 10**6), "channels"),
        (_set("spatial_dims", 4), "spatial_dims"),
        (_set("version", 2), "version"),
        (_set("extent", None), "extent"),
        (_set("intensity.0.percentiles", [3.0, 2.0, 1.0]), "intensity[0].percentiles"),
        (_set("intensity.0.std", -1.0), "intensity[0].std"),
        (_set("intensity.0.mean", 1e300), "intensity[0].mean"),
        (_set("intensity.0", [1, 2, 3]), "intensity[0]"),
        (_set("class_fractions", [0.5, 0.6]), "class_fractions"),
        (_set("class_fractions", [1.0 / 300] * 300), "class_fractions"),
        (_set("declared_classes", 10**6), "declared_classes"),
        (_set("declared_classes", True), "declared_classes"),
        (_set("extra", 1), "fingerprint"),
        (_set("size", _DELETE), "fingerprint"),
        ([1, 2, 3], "fingerprint"),
    ],
)
def test_a_hostile_fingerprint_is_refused_in_one_line_naming_site_and_field(record: Any, field: str) -> None:
    with pytest.raises(DataError, match=rf"^site 'evil': fingerprint field '{re.escape(field)}' ") as caught:
        Fingerprint.from_dict(record, site="evil")
    assert "\n" not in str(caught.value)


def test_a_site_mixing_dimensionalities_is_refused_naming_the_case() -> None:
    site = SiteData(
        "h2",
        (
            Case("flat", np.zeros((1, 4, 4), np.float32), None, 0, Path("flat")),
            Case("deep", np.zeros((1, 4, 4, 4), np.float32), None, 0, Path("deep")),
        ),
    )
    with pytest.raises(
        DataError, match="site 'h2', file 'deep': case 'deep' has 1 channels and 3 spatial axes"
    ):
        fingerprint_site(site, task="classification")
