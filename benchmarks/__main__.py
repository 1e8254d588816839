"""Runs the benchmarks one after another: ``python -m benchmarks [NAME ...]`` from the repo root.

Without names every benchmark runs, in the order of ``BENCHMARKS``; with names only those run.
Each benchmark module's ``main()`` is called with its default options.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import time
from collections.abc import Sequence

import torch

BENCHMARKS = (
    "overhead",
    "aggregation",
    "secure_aggregation",
    "protected_rounds",
    "dp",
    "dp_utility",
    "privacy_unit",
    "transfer",
    "robustness",
    "engines",
    "topologies",
)


def run(name: str) -> None:
    """Imports ``benchmarks.<name>`` and calls its ``main()`` with default options.

    A ``main`` that parses its own command line (``main(argv=None)``) is given an empty one, so
    that this runner's arguments do not reach it. Torch's thread count is restored afterwards
    because some benchmarks pin it for themselves.
    """
    main = importlib.import_module(f"benchmarks.{name}").main
    threads = torch.get_num_threads()
    try:
        if inspect.signature(main).parameters:
            main([])
        else:
            main()
    finally:
        torch.set_num_threads(threads)


def cli(argv: Sequence[str] | None = None) -> None:
    """Parses the benchmark names and runs each, printing a header and its duration."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    valid = ", ".join(BENCHMARKS)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {valid}")
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; valid names: {valid}")
    for name in names:
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        run(name)
        print(f"== {name}: {time.perf_counter() - start:.1f} s\n", flush=True)


if __name__ == "__main__":
    cli()
