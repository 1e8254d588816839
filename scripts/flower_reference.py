"""Writes Flower's outputs of its robust aggregators on fixed inputs, for medfed's comparison test.

Flower cannot be installed beside medfed (it pins protobuf 6, medfed's wire code needs 7), so the
reference values are computed once in a separate environment and committed:

    python3 -m venv /tmp/flwr-venv && /tmp/flwr-venv/bin/pip install flwr numpy
    /tmp/flwr-venv/bin/python scripts/flower_reference.py tests/aggregation/flower_reference.json
"""

from __future__ import annotations

import json
import sys

import flwr
import numpy as np
from flwr.server.strategy.aggregate import aggregate_krum, aggregate_median, aggregate_trimmed_avg

SHAPES = [(3, 4), (5,)]
NUM_CLIENTS = 7


def _inputs(seed: int) -> list[tuple[list[np.ndarray], int]]:
    rng = np.random.default_rng(seed)
    results = []
    for client in range(NUM_CLIENTS):
        arrays = [rng.normal(0.0, 1.0, shape).astype(np.float32) for shape in SHAPES]
        if client == NUM_CLIENTS - 1:
            arrays = [array * 50.0 + 10.0 for array in arrays]  # one outlier
        results.append((arrays, int(rng.integers(1, 100))))
    return results


def _as_lists(arrays: list[np.ndarray]) -> list[list[float]]:
    return [np.asarray(array, dtype=np.float64).reshape(-1).tolist() for array in arrays]


def main(path: str) -> None:
    cases = []
    for seed in range(3):
        results = _inputs(seed)
        outputs = {
            "median": aggregate_median(results),
            "krum_f1": aggregate_krum(results, num_malicious=1, to_keep=0),
            "multikrum_f1_keep3": aggregate_krum(results, num_malicious=1, to_keep=3),
            "trimmed_avg_0.2": aggregate_trimmed_avg(results, proportiontocut=0.2),
        }
        cases.append(
            {
                "seed": seed,
                "updates": [_as_lists(arrays) for arrays, _ in results],
                "num_examples": [count for _, count in results],
                "outputs": {name: _as_lists(list(arrays)) for name, arrays in outputs.items()},
            }
        )
    document = {"flwr_version": flwr.__version__, "shapes": SHAPES, "cases": cases}
    with open(path, "w") as handle:
        json.dump(document, handle, indent=0)


if __name__ == "__main__":
    main(sys.argv[1])
