"""Robust aggregation under attack: 5 synthetic sites, 1 malicious, each attack, FedAvg vs each
robust rule; prints Dice (and the backdoor success rate) of clean, attacked and defended runs.

Target (issue 8): for each attack, the best robust rule keeps the mean Dice within 2 points of
the clean FedAvg run while plain FedAvg visibly degrades. Also printed: each rule's cost over
FedAvg on the clean run, as the ratio of server aggregation time per round and of the run's
wall time.

Sites: the four built-in synthetic hospitals and a fifth (``hospital_e``, a second 3T-like T1
profile), all training; ``hospital_b`` is malicious. Tiny U-Net, 32x32 images.

Run: ``python benchmarks/robustness.py [--rounds N] [--attacks sign_flip,scale] [--rules median]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from medfed.config.loading import build_strategy, parse_config
from medfed.config.schema import SimulationConfig, SiteSourceConfig, StrategyConfig
from medfed.data import (
    DEFAULT_SITES,
    ScannerProfile,
    SyntheticSite,
    generate_federation,
)
from medfed.orchestration.experiments import Experiment
from medfed.orchestration.federation_data import prepare_data
from medfed.orchestration.simulation import ExperimentRunner
from medfed.strategies.base import Strategy, WrappedStrategy
from medfed.types import ServerState, TrainResult

ATTACKS = ("sign_flip", "scale", "gaussian", "alie", "label_flip", "backdoor")
RULES: dict[str, dict[str, Any] | None] = {
    "fedavg": None,
    "median": {"rule": "median"},
    "trimmed_mean": {"rule": "trimmed_mean", "beta": 0.2},
    "krum": {"rule": "krum", "f": 1, "m": 1},
    "multi_krum": {"rule": "krum", "f": 1, "m": 3},
    "geometric_median": {"rule": "geometric_median"},
    "norm_bound": {"rule": "norm_bound"},
}
MALICIOUS = "hospital_b"
FIFTH_SITE = SyntheticSite(
    "hospital_e", ScannerProfile("t1", 1800.0, 1.2, 0.25, 0.03, 0.6), 40, 0.5, (0.06, 0.11)
)
CASES_SCALE = 0.5
SETTINGS: dict[str, Any] = {
    "model": {"params": {"channels": [8, 16, 32], "strides": [2, 2], "num_res_units": 1}},
    "training": {"local_epochs": 2, "batch_size": 4, "lr": 3e-3},
    "baselines": {"centralized": False, "local": False},
    "federation": {"evaluate_every": 0},
}


class TimedStrategy(WrappedStrategy):
    """Records the seconds each ``aggregate`` call takes."""

    def __init__(self, inner: Strategy) -> None:
        super().__init__(inner)
        self.name = inner.name
        self.seconds: list[float] = []

    def aggregate(self, state: ServerState, results: Sequence[TrainResult], num_sites: int) -> ServerState:
        start = time.perf_counter()
        new = self.inner.aggregate(state, results, num_sites)
        self.seconds.append(time.perf_counter() - start)
        return new


def make_sites(root: Path) -> list[SiteSourceConfig]:
    """Writes the five sites under ``root`` (MSD layout) and returns their data entries."""
    sites = [
        replace(s, num_cases=max(4, round(s.num_cases * CASES_SCALE))) for s in (*DEFAULT_SITES, FIFTH_SITE)
    ]
    paths = generate_federation(sites, root, image_size=32, seed=0)
    return [SiteSourceConfig(name=name, path=path, format="msd") for name, path in paths.items()]


def base_config(
    sites: list[SiteSourceConfig], out: Path, rounds: int, attack: str | None
) -> SimulationConfig:
    """The benchmark's simulation settings, with ``attack`` on ``MALICIOUS`` (or none)."""
    raw: dict[str, Any] = {
        **SETTINGS,
        "output_dir": str(out),
        "data": {"synthetic": None, "sites": [s.model_dump(mode="json") for s in sites], "unseen_site": None},
        "federation": {**SETTINGS["federation"], "rounds": rounds},
        "strategies": [{"name": "fedavg"}],
    }
    if attack is not None:
        raw["attack"] = {"sites": [MALICIOUS], "kind": attack, "factor": 10.0, "clean_runs": False}
    return parse_config(raw)


def run_one(config: SimulationConfig, rule: str, attacked: bool, out: Path) -> dict[str, float]:
    """Dice, backdoor success, aggregation seconds per round and wall seconds of one run."""
    data = prepare_data(config.data, out / "data", seed=config.seed)
    runner = ExperimentRunner(config, data, out / f"{rule}-{int(attacked)}")
    robust = RULES[rule]
    strategy = TimedStrategy(
        build_strategy(StrategyConfig.model_validate({"name": "fedavg", "robust": robust}))
    )
    start = time.perf_counter()
    runner.run(Experiment(rule, "federated", strategy, data.train, attacked=attacked))
    wall = time.perf_counter() - start
    last = config.federation.rounds
    rows = [r for r in runner.metrics.rows() if r.round == last and r.split == "test"]
    dice = [r.value for r in rows if r.metric == "dice"]
    backdoor = [r.value for r in rows if r.metric == "backdoor_success"]
    return {
        "dice": sum(dice) / len(dice),
        "backdoor": sum(backdoor) / len(backdoor) if backdoor else math.nan,
        "aggregate_s": sum(strategy.seconds) / len(strategy.seconds),
        "wall_s": wall,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Prints the clean/attacked/defended table and the cost of each rule on the clean run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--rules", default=",".join(RULES))
    args = parser.parse_args(argv)
    attacks = [a for a in args.attacks.split(",") if a]
    rules = ["fedavg", *[r for r in args.rules.split(",") if r and r != "fedavg"]]
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sites = make_sites(root / "sites")
        clean_config = base_config(sites, root / "clean", args.rounds, None)
        clean = {rule: run_one(clean_config, rule, False, root / "clean") for rule in rules}
        print(
            f"5 sites, {MALICIOUS} malicious, {args.rounds} rounds, 32x32, U-Net 8-16-32; Dice x100 (backdoor success %)"
        )
        print(f"{'attack':<12}" + "".join(f"{rule:>18}" for rule in rules))
        print(f"{'none':<12}" + "".join(f"{_cell(clean[rule]):>18}" for rule in rules), flush=True)
        _print_cost(clean, rules)
        for attack in attacks:
            config = base_config(sites, root / attack, args.rounds, attack)
            scores = {rule: run_one(config, rule, True, root / attack) for rule in rules}
            print(f"{attack:<12}" + "".join(f"{_cell(scores[rule]):>18}" for rule in rules), flush=True)


def _print_cost(clean: dict[str, dict[str, float]], rules: list[str]) -> None:
    base = clean["fedavg"]
    print("cost on the clean run (rule / fedavg): aggregation time per round, run wall time", flush=True)
    for rule in rules[1:]:
        agg = clean[rule]["aggregate_s"] / base["aggregate_s"]
        wall = clean[rule]["wall_s"] / base["wall_s"]
        print(
            f"  {rule:<18} aggregate x{agg:7.1f} ({clean[rule]['aggregate_s'] * 1e3:.1f} ms)   wall x{wall:.2f}",
            flush=True,
        )


def _cell(score: dict[str, float]) -> str:
    backdoor = score["backdoor"]
    suffix = "" if math.isnan(backdoor) else f" ({100 * backdoor:.0f}%)"
    return f"{100 * score['dice']:.1f}{suffix}"


if __name__ == "__main__":
    main()
