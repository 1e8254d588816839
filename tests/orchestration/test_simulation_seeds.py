"""A simulation over several seeds (``seeds:``): each seed's run equals the single-seed run with
that seed, the summary is their mean ± sd, and a killed run resumes only its unfinished cells."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

import pytest
from builders import tiny_simulation

import medfed
from medfed.config.loading import parse_config
from medfed.orchestration.run_dir import resume_run
from medfed.orchestration.simulation import Callbacks
from medfed.report.summary import SummaryRow
from medfed.simulator import run_simulation

TINY = tiny_simulation(federation={"rounds": 2})
SEEDS = (3, 5)

Singles = Mapping[int, Mapping[str, SummaryRow]]


@pytest.fixture(scope="module")
def singles(tmp_path_factory: pytest.TempPathFactory) -> Singles:
    """Each seed's summary, run alone with ``seed:``."""
    runs = {}
    for seed in SEEDS:
        folder = tmp_path_factory.mktemp(f"seed{seed}")
        outcome = run_simulation(parse_config({**TINY, "seed": seed, "output_dir": str(folder)}))
        runs[seed] = {row.experiment: row for row in outcome.summary}
    return runs


def _same(value: float, expected: float) -> bool:
    return (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected, rel=1e-9)


def _check_pooled(rows: Iterable[Mapping[str, Any]], singles: Singles) -> None:
    """Each row's scores are the mean and sample sd of the single-seed runs' scores."""
    spread = []
    for row in rows:
        own = [singles[seed][row["experiment"]].own_sites for seed in SEEDS]
        unseen = [singles[seed][row["experiment"]].unseen for seed in SEEDS]
        assert row["seeds"] == len(SEEDS)
        assert _same(row["own_sites"], fmean(own)) and _same(row["own_sites_sd"], stdev(own)), row
        assert _same(row["unseen"], fmean(unseen)) and _same(row["unseen_sd"], stdev(unseen)), row
        spread += [row["own_sites_sd"], row["unseen_sd"]]
    assert max(spread) > 0  # the seeds changed the outcome: each run took its own seed


def test_a_two_seed_run_is_the_mean_and_sd_of_the_single_seed_runs(tmp_path: Path, singles: Singles) -> None:
    run = tmp_path / "run"
    results = medfed.simulate({**TINY, "seeds": list(SEEDS)}, output_dir=run)
    assert list(results.summary["experiment"]) == ["fedavg"]
    _check_pooled(results.summary.to_dict("records"), singles)
    assert set(results.metrics["seed"]) == set(SEEDS)
    written = json.loads((run / "results.json").read_text())["experiments"]
    _check_pooled(written, singles)
    for seed in SEEDS:  # each seed's run directory holds that seed's own run and summary
        assert f"seed: {seed}\n" in (run / f"seed_{seed}" / "config.yaml").read_text()
        alone = json.loads((run / f"seed_{seed}" / "results.json").read_text())["experiments"]
        assert [row["own_sites"] for row in alone] == [singles[seed]["fedavg"].own_sites]
    assert "seeds:\n- 3\n- 5\n" in (run / "config.yaml").read_text()
    assert "mean ± sample standard deviation" in (run / "report.html").read_text()


class _Killed(Exception):
    pass


def test_a_killed_two_seed_run_resumes_only_its_unfinished_cells(tmp_path: Path, singles: Singles) -> None:
    run = tmp_path / "run"
    started: list[tuple[str, int]] = []
    rounds: list[int] = []
    seeds: list[tuple[int, int, int]] = []

    def callbacks(kill_at: int | None) -> Callbacks:
        """Records each seed's and experiment's start and each round; killed at the
        ``kill_at``-th round."""
        started.clear()
        rounds.clear()
        seeds.clear()

        def on_round(round: int) -> None:
            rounds.append(round)
            if len(rounds) == kill_at:
                raise _Killed

        return Callbacks(
            on_seed=lambda *told: seeds.append(told),
            on_experiment=lambda e, done: started.append((e.name, done)),
            on_round=on_round,
        )

    with pytest.raises(_Killed):  # after seed 3's last round, before seed 5 starts
        run_simulation(
            parse_config({**TINY, "seeds": list(SEEDS), "output_dir": str(run)}), callbacks=callbacks(2)
        )
    assert not (run / "seed_5").exists()
    with pytest.raises(_Killed):  # seed 3 is not run again; seed 5 starts, killed after round 1
        run_simulation(resume_run(run), resume=True, callbacks=callbacks(1))
    assert started == [("fedavg", 2), ("fedavg", 0)]
    outcome = run_simulation(resume_run(run), resume=True, callbacks=callbacks(None))
    assert started == [("fedavg", 2), ("fedavg", 1)] and rounds == [2]  # seed 5 continues
    assert seeds == [(3, 1, 2), (5, 2, 2)]  # the seed, its position and the number of seeds
    _check_pooled([vars(row) for row in outcome.summary], singles)
    losses = Counter((row.seed, row.round, row.site) for row in outcome.rows if row.metric == "loss")
    assert len(losses) == 2 * 2 * 3 and set(losses.values()) == {1}  # seeds, rounds, sites: none twice
