"""Peer-to-peer topologies against client-server FedAvg on the built-in data: Dice of each run's
model (the sites' consensus for peer-to-peer runs) on the training sites' held-out cases and on
the unseen site, and the bytes each site sent and received over the run.

Topologies: ``client_server`` (FedAvg), ``braintorrent`` (one pull per site and round),
``cyclic`` (fixed order, one cycle per round) and ``gossip`` (ring). Every run uses the same
data, seed, initial model, trainer and number of rounds; each round trains every site once on
average. Bytes are the safetensors payloads a deployment would send (``medfed.orchestration.traffic``).

Run: ``python -m benchmarks topologies`` or ``python -m benchmarks.topologies [--rounds N]
[--image-size S] [--cases-scale F] [--local-epochs E] [--lr LR]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from statistics import fmean

from medfed.config.loading import parse_config
from medfed.orchestration.experiments import plan_experiments
from medfed.orchestration.federation_data import prepare_data
from medfed.orchestration.simulation import ExperimentRunner

TOPOLOGIES = ("client_server", "braintorrent", "cyclic", "gossip")


def run_topology(topology: str, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """One federated FedAvg experiment under ``topology``: Dice and bytes per site."""
    config = parse_config(
        {
            "seed": args.seed,
            "output_dir": str(folder),
            "data": {"synthetic": {"image_size": args.image_size, "cases_scale": args.cases_scale}},
            "model": {"params": {"channels": [8, 16], "strides": [2]}},
            "training": {"local_epochs": args.local_epochs, "batch_size": 4, "lr": args.lr},
            "federation": {"rounds": args.rounds, "evaluate_every": 0, "topology": topology},
            "strategies": [{"name": "fedavg"}],
            "baselines": {"centralized": False, "local": False},
        }
    )
    data = prepare_data(config.data, folder / "data", seed=config.seed)
    runner = ExperimentRunner(config, data, folder)
    (experiment,) = plan_experiments(config, data)
    start = time.perf_counter()
    runner.run(experiment)
    seconds = time.perf_counter() - start
    rows = runner.metrics.rows(experiment.name)
    last = max(row.round for row in rows)
    dice = {
        row.site: row.value
        for row in rows
        if row.round == last and row.metric == "dice" and row.split in ("test", "unseen")
    }
    unseen = config.data.unseen_site
    traffic = {
        metric: sum(row.value for row in rows if row.split == "traffic" and row.metric == metric)
        for metric in ("bytes_sent", "bytes_received")
    }
    sites = len(data.train)
    return {
        "own": fmean(value for site, value in dice.items() if site != unseen),
        "unseen": dice.get(unseen or "", math.nan),
        "sent_mb": traffic["bytes_sent"] / sites / 1e6,
        "received_mb": traffic["bytes_received"] / sites / 1e6,
        "seconds": seconds,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--cases-scale", type=float, default=0.3)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"{args.rounds} rounds, {args.image_size}x{args.image_size} images, cases_scale {args.cases_scale}, "
        f"U-Net channels [8, 16], {args.local_epochs} local epochs, lr {args.lr}, seed {args.seed}"
    )
    print(
        f"{'topology':<14}{'Dice own':>10}{'Dice unseen':>13}{'MB sent/site':>14}{'MB recv/site':>14}{'s':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="medfed-topologies-") as folder:
        for topology in TOPOLOGIES:
            r = run_topology(topology, Path(folder) / topology, args)
            print(
                f"{topology:<14}{r['own']:>10.3f}{r['unseen']:>13.3f}{r['sent_mb']:>14.4f}"
                f"{r['received_mb']:>14.4f}{r['seconds']:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
