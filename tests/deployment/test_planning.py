"""The study plan of a deployed job: sites answer a fingerprint step before round 1, the server
refuses a hostile reply and plans from every site's fingerprint."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from medfed.data import Case, SiteData
from medfed.deployment.job import JobConfig
from medfed.deployment.planning import FINGERPRINT, accept_fingerprint, planned_job, site_fingerprint
from medfed.errors import ConfigError, DataError, UpdateRejected
from medfed.transport.board import PostedTask, RoundBoard


def _site(name: str, shape: tuple[int, ...], spacing: float, channels: int = 1) -> SiteData:
    rng = np.random.default_rng(len(name))
    cases = []
    for index in range(2):
        image = rng.normal(100.0, 20.0, (channels, *shape)).astype(np.float32)
        mask = np.zeros((1, *shape), dtype=np.int64)
        mask[0, 2:5, 2:5] = 1 + index  # classes 1 and 2
        cases.append(Case(f"c{index}", image, mask, None, Path(f"c{index}"), (spacing,) * len(shape)))
    return SiteData(name, tuple(cases))


JOB = JobConfig.model_validate(
    {"preprocessing": "auto", "model": {"params": {"channels": [4, 8], "strides": [2]}}, "seed": 3}
)


def _answer(board: RoundBoard, replies: dict[str, bytes]) -> threading.Thread:
    def answer() -> None:
        for site, payload in replies.items():
            offer = board.task_for(site, timeout_s=5)
            assert isinstance(offer, PostedTask) and offer.step == FINGERPRINT and offer.round == 0
            try:
                board.receive(site, offer.task_id, payload)
            except UpdateRejected:
                pass  # refused: counts as the site's answer

    thread = threading.Thread(target=answer)
    thread.start()
    return thread


def test_the_server_plans_from_every_sites_fingerprint() -> None:
    sites = {"a": _site("a", (12, 12), 1.0), "b": _site("b", (16, 16), 2.0), "c": _site("c", (8, 8), 1.5)}
    board = RoundBoard()
    thread = _answer(board, {name: site_fingerprint(data, JOB) for name, data in sites.items()})
    job, plan = planned_job(JOB, board, list(sites), timeout_s=10)
    thread.join()
    assert plan.sites == ("a", "b", "c") and plan.spacing == (1.5, 1.5)
    # extents 12, 32 and 12 mm at 1.5 mm: 8, 21.3, 8 voxels; median 8, a multiple of the stride 2
    assert plan.median_size == pytest.approx((8.0, 8.0)) and plan.patch_size == (8, 8)
    assert job.preprocessing.spacing == [1.5, 1.5] and job.preprocessing.patch_size == [8, 8]
    params = job.model.params
    assert (params["spatial_dims"], params["in_channels"], params["out_channels"]) == (2, 1, 3)
    assert params["channels"] == [4, 8]  # the job's own parameters are kept


def test_a_hostile_fingerprint_is_refused_and_the_plan_names_the_missing_site() -> None:
    good = site_fingerprint(_site("a", (8, 8), 1.0), JOB)
    hostile = json.loads(good)
    hostile["spacing"] = [-1.0, 1.0]
    with pytest.raises(UpdateRejected, match="site 'b' rejected: fingerprint field 'spacing\\[0\\]'"):
        accept_fingerprint("b", json.dumps(hostile).encode())
    with pytest.raises(UpdateRejected, match="not JSON"):
        accept_fingerprint("b", json.dumps({**hostile, "spacing": [float("inf"), 1.0]}).encode())
    board = RoundBoard()
    thread = _answer(board, {"a": good, "b": json.dumps(hostile).encode()})
    with pytest.raises(ConfigError, match=r"no usable fingerprint from site\(s\) \['b'\]"):
        planned_job(JOB, board, ["a", "b"], timeout_s=10)
    thread.join()


def test_a_site_with_other_channels_stops_the_plan_naming_it() -> None:
    board = RoundBoard()
    replies = {
        "a": site_fingerprint(_site("a", (8, 8), 1.0), JOB),
        "b": site_fingerprint(_site("b", (8, 8), 1.0, channels=2), JOB),
        "c": site_fingerprint(_site("c", (8, 8), 1.0), JOB),
    }
    thread = _answer(board, replies)
    with pytest.raises(DataError, match=r"^site 'b': its images have 2 channel\(s\), site 'a''s 1; "):
        planned_job(JOB, board, ["a", "b", "c"], timeout_s=10)
    thread.join()
