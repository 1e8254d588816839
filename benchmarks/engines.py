"""Engines: simulated sites in memory against the same sites as Ray actors on a local Ray.

* ``sites``: one round of N tiny sites (2 cases of 16x16, a 4-8 U-Net, 1 local step of batch 2)
  through ``InMemoryGrid`` and through ``RayGrid`` (Ray started once with every core,
  ``ray.num_cpus_per_site`` 1, so one actor per core, each hosting N / cores sites, each with
  one torch thread). Prints sites per second of the round (on Ray the second: the actors' start
  -up time covers building their sites and the first round, which pays lazy imports), and the
  peak resident memory, sampled every 50 ms from ``/proc``: in memory of the driver, on Ray of
  the driver and every process it started (Ray's own included; shared memory is counted once
  per process that maps it).
* ``w1``: a small W1-like run, FedAvg over 4 sites x 32 cases of 64x64, U-Net 16-32-64-128,
  2 rounds x 1 epoch (Adam, batch 16), as the bare PyTorch loop of ``benchmarks.overhead``, as
  medfed in memory, and as medfed on Ray (actor start-up included); prints wall times, ratios
  and the largest weight differences (Ray against in memory: 0 with a one-thread driver).

Run: ``python -m benchmarks engines`` (needs ``ray``: ``pip install -e .[ray]``); sizes:
``python -m benchmarks.engines --sites 10 100 500``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray
import torch

from benchmarks.overhead import (
    BATCH,
    LR,
    SIZE,
    UNET,
    load_average,
    max_abs_diff,
    run_bare,
)
from medfed.config.schema import SimulationConfig
from medfed.data import (
    DEFAULT_SITES,
    SiteData,
    generate_federation,
    load_site,
)
from medfed.data.cases import Case
from medfed.orchestration.grid import Grid
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.ray_grid import RayGrid, RayPlacement
from medfed.orchestration.simulation import SiteRecipe, new_model, site_dataset
from medfed.orchestration.site import cpu_weights
from medfed.strategies.registry import STRATEGIES
from medfed.types import TrainTask, Weights

SITE_COUNTS = (10, 100, 500)
TINY_UNET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "channels": (4, 8), "strides": (2,)}
W1_CASES, W1_ROUNDS, SEED = 32, 2, 0
ONE_CPU = RayPlacement(cpus_per_site=1)


def tiny_config() -> SimulationConfig:
    """One local step of batch 2 per site, no augmentation, one CPU per site on Ray."""
    return SimulationConfig(
        seed=SEED,
        model={"name": "unet", "params": {"channels": [4, 8], "strides": [2]}},
        training={"local_epochs": 1, "batch_size": 2},
        data={"augment": False},
    )


def tiny_sites(count: int) -> dict[str, SiteData]:
    """``count`` sites of 2 random 16x16 cases each."""
    rng = np.random.default_rng(SEED)
    return {
        f"site{index:04d}": SiteData(f"site{index:04d}", tuple(tiny_case(rng, case) for case in range(2)))
        for index in range(count)
    }


def tiny_case(rng: np.random.Generator, index: int) -> Case:
    image = rng.random((1, 16, 16), dtype=np.float32)
    mask = (image > 0.7).astype(np.int64)
    return Case(case_id=f"case{index}", image=image, mask=mask, label=None, source=Path("memory"))


@contextmanager
def peak_rss(*, tree: bool) -> Iterator[list[int]]:
    """Yields a one-item list that holds, on exit, the peak RSS in bytes of this process, and
    with ``tree`` of all its descendants too."""
    peak = [tree_rss(tree=tree)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss(tree=tree))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], tree_rss(tree=tree))


def tree_rss(*, tree: bool = True) -> int:
    """Resident bytes of this process and, with ``tree``, all its descendants (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent, pages = _parent_and_pages(entry)
            except (OSError, ValueError, IndexError):  # the process ended meanwhile
                continue
            children.setdefault(parent, []).append(int(entry.name))
            rss[int(entry.name)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []) if tree else [])
    return total


def _parent_and_pages(entry: Path) -> tuple[int, int]:
    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    pages = int((entry / "statm").read_text().split()[1])
    return parent, pages


def one_round(grid: Grid, task: TrainTask, names: Sequence[str]) -> float:
    """Seconds of one round that sends ``task`` to every site in ``names``."""
    start = time.perf_counter()
    results = grid.train(dict.fromkeys(names, task))
    assert len(results) == len(names)
    return time.perf_counter() - start


def sites_rows(counts: Sequence[int]) -> list[str]:
    """For each site count: round time, sites/s and peak RSS, in memory and on Ray."""
    config = tiny_config()
    recipe = SiteRecipe(config, TINY_UNET, STRATEGIES.create("fedavg"))
    task = TrainTask(round=1, weights=cpu_weights(new_model(config, TINY_UNET)))
    warm_up = tiny_sites(1)  # the first step of a process pays for lazy imports and allocations
    one_round(recipe.grid(warm_up, {}), task, list(warm_up))
    rows = []
    for count in counts:
        sites = tiny_sites(count)
        with peak_rss(tree=False) as memory_peak:
            local = recipe.grid(sites, {})  # the in-memory engine: one model and trainer for all
            memory_s = one_round(local, task, sorted(sites))
        del local
        with peak_rss(tree=True) as ray_peak:
            start = time.perf_counter()
            grid = RayGrid(recipe, sites, {}, placement=ONE_CPU)
            try:
                one_round(grid, task, sorted(sites))  # an actor's first step pays its lazy imports
                startup_s = time.perf_counter() - start
                ray_s = one_round(grid, task, sorted(sites))
            finally:
                grid.close()
        rows.append(
            f"{count:>5} | {memory_s:7.2f} s {count / memory_s:7.1f}/s {memory_peak[0] / 2**20:7.0f} MiB"
            f" | start {startup_s:6.2f} s, round {ray_s:7.2f} s {count / ray_s:7.1f}/s {ray_peak[0] / 2**20:7.0f} MiB"
            f" | {memory_s / ray_s:5.2f}x"
        )
    return rows


def w1_sites(directory: Path) -> dict[str, SiteData]:
    """``DEFAULT_SITES`` with ``W1_CASES`` cases of ``SIZE`` x ``SIZE`` each."""
    specs = [dataclasses.replace(site, num_cases=W1_CASES) for site in DEFAULT_SITES]
    folders = generate_federation(specs, directory, image_size=SIZE, seed=SEED)
    return {name: load_site(name, folder) for name, folder in folders.items()}


def w1_medfed(grid: Grid, recipe: SiteRecipe, names: Sequence[str]) -> Weights:
    """The final weights of ``W1_ROUNDS`` FedAvg rounds over ``grid``."""
    strategy = recipe.strategy
    plan = RoundPlan(rounds=W1_ROUNDS, sites=sorted(names), seed=SEED)
    start = strategy.init(cpu_weights(new_model(recipe.config, recipe.model_params)))
    return run_rounds(strategy, start, plan, grid).weights


def w1_rows(sites: Mapping[str, SiteData]) -> list[str]:
    """Wall times of the W1-like run: bare PyTorch, medfed in memory, medfed on Ray."""
    config = SimulationConfig(
        seed=SEED,
        model={
            "name": "unet",
            "params": {"channels": list(UNET["channels"]), "strides": list(UNET["strides"])},
        },
        data={"augment": False},
        training={"local_epochs": 1, "batch_size": BATCH, "lr": LR, "optimizer": "adam"},
    )
    recipe = SiteRecipe(config, UNET, STRATEGIES.create("fedavg"))
    datasets = {name: site_dataset(config, UNET, site, training=True) for name, site in sites.items()}
    start = time.perf_counter()
    bare = run_bare(datasets, new_model(config, UNET), torch.device("cpu"), rounds=W1_ROUNDS)
    bare_s = time.perf_counter() - start
    start = time.perf_counter()
    memory = w1_medfed(recipe.grid(sites, {}), recipe, list(sites))
    memory_s = time.perf_counter() - start
    start = time.perf_counter()
    grid = RayGrid(recipe, sites, {}, placement=ONE_CPU)
    try:
        on_ray = w1_medfed(grid, recipe, list(sites))
    finally:
        grid.close()
    ray_s = time.perf_counter() - start
    times = (
        f"bare PyTorch {bare_s:.1f} s; medfed in memory {memory_s:.1f} s ({memory_s / bare_s:.2f}x); "
        f"medfed on Ray {ray_s:.1f} s ({ray_s / bare_s:.2f}x, actor start-up included)"
    )
    diffs = (
        f"max abs diff vs bare: in memory {max_abs_diff(bare, memory):.3g}, Ray {max_abs_diff(bare, on_ray):.3g}; "
        f"Ray vs in memory {max_abs_diff(memory, on_ray):.3g} (0 when the driver uses 1 torch thread, as an actor)"
    )
    return [times, diffs]


def main(argv: Sequence[str] | None = None) -> None:
    """Starts a local Ray with every core, runs both parts and prints their tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=list(SITE_COUNTS), help="site counts")
    parser.add_argument("--skip-w1", action="store_true", help="only the sites part")
    parser.add_argument("--threads", type=int, help="torch threads of the driver (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        print(
            f"{os.cpu_count()} cores, {torch.get_num_threads()} driver threads, load average {load_average()}"
        )
        print(f"idle Ray (driver + Ray processes): {tree_rss() / 2**20:.0f} MiB")
        print(
            "sites | in memory: round, sites/s, peak RSS | Ray: start + round 1, round 2, sites/s, peak RSS | speed-up"
        )
        for row in sites_rows(args.sites):
            print(row, flush=True)
        if not args.skip_w1:
            with tempfile.TemporaryDirectory() as directory:
                for row in w1_rows(w1_sites(Path(directory))):
                    print(row)
        print(f"load average at the end: {load_average()}")
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
