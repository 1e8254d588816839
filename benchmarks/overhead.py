"""Framework overhead: medfed's federated training against the same steps in bare PyTorch.

Both sides train a 2D U-Net (channels 16-32-64-128, strides 2-2-2) with FedAvg for 5 rounds of
1 local epoch (Adam, lr 1e-3, batch 16, Dice + CE) on 4 synthetic sites of 96 cases of 64x64.

* ``medfed``: the simulation machinery that ``medfed simulate`` uses: ``LocalSite`` +
  ``LocalTrainer`` behind an ``InMemoryGrid``, ``run_rounds`` with the registered
  ``fedavg`` strategy (update validation included), and a safetensors checkpoint after every
  round.
* ``bare``: the same work written by hand: for each round and site, load the global weights,
  a fresh Adam, a seeded shuffling ``DataLoader``, forward/loss/backward/step; then a plain
  sample-weighted average of the state dicts.

The bare loop derives each (round, site) seed with ``derive_seed`` exactly as ``LocalSite`` does
and feeds it to the loader's generator and ``torch.manual_seed`` exactly as ``LocalTrainer`` does,
so both sides run identical arithmetic and should end with identical weights; the benchmark
prints the largest absolute difference as a check that it timed the same work. Data
preparation (generation, loading, normalisation) and model construction are outside both
timings. The sides run alternately (bare, medfed, bare, medfed) and the fastest run of each
counts.

Run: ``python benchmarks/overhead.py`` or ``python -m benchmarks overhead``.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch
from monai.losses import DiceCELoss
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medfed.data import DEFAULT_SITES, build_dataset, generate_federation, load_site
from medfed.device import default_device
from medfed.models import build_model
from medfed.orchestration.checkpoint import Checkpoint, checkpoint_path, save_checkpoint
from medfed.orchestration.grid import InMemoryGrid
from medfed.orchestration.loop import RoundPlan, run_rounds
from medfed.orchestration.site import LocalSite, cpu_weights
from medfed.seeding import derive_seed
from medfed.strategies.registry import STRATEGIES
from medfed.training import LocalTrainer, TrainSettings
from medfed.types import ServerState, TrainResult, Weights

CASES, SIZE, BATCH, ROUNDS, LR, SEED = 96, 64, 16, 5, 1e-3, 0
UNET = {
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 2,
    "channels": (16, 32, 64, 128),
    "strides": (2, 2, 2),
}
REPEATS = 2
TARGET = 1.05

T = TypeVar("T")


def prepare_datasets(directory: Path) -> dict[str, Dataset]:
    """Writes ``DEFAULT_SITES`` with ``CASES`` cases each under ``directory``; datasets by site."""
    sites = [dataclasses.replace(site, num_cases=CASES) for site in DEFAULT_SITES]
    folders = generate_federation(sites, directory, image_size=SIZE, seed=SEED)
    return {
        name: build_dataset(
            load_site(name, folder).cases, task="segmentation", augment=False, seed=SEED, site=name
        )
        for name, folder in folders.items()
    }


def new_model() -> nn.Module:
    """The initial U-Net, identical on every call."""
    return build_model("unet", UNET, seed=SEED)


def run_medfed(datasets: Mapping[str, Dataset], model: nn.Module, checkpoints: Path) -> Weights:
    """FedAvg through medfed's simulation machinery; returns the final global weights."""
    strategy = STRATEGIES.create("fedavg")
    trainer = LocalTrainer(
        task="segmentation", settings=TrainSettings(local_epochs=1, batch_size=BATCH, lr=LR)
    )
    sites = {
        name: LocalSite(name, data, model=model, trainer=trainer, strategy=strategy, seed=SEED)
        for name, data in datasets.items()
    }

    def checkpoint(state: ServerState, results: list[TrainResult]) -> None:
        site_states = {name: site.state for name, site in sites.items()}
        save_checkpoint(checkpoint_path(checkpoints, state.round), Checkpoint(state, site_states))

    plan = RoundPlan(rounds=ROUNDS, sites=sorted(sites), seed=SEED)
    start = strategy.init(cpu_weights(model))
    final = run_rounds(strategy, start, plan, InMemoryGrid(sites), on_round=checkpoint)
    return final.weights


def run_bare(
    datasets: Mapping[str, Dataset], model: nn.Module, device: torch.device, *, rounds: int = ROUNDS
) -> Weights:
    """The same FedAvg run (``rounds`` rounds) as a hand-written PyTorch loop; returns the final
    global weights."""
    model.to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    global_weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
    for round in range(1, rounds + 1):
        updates = []
        for name in sorted(datasets):  # the order in which run_rounds visits the sites
            model.load_state_dict(global_weights)
            seed = derive_seed(SEED, "train", round, name)  # LocalSite's per-(round, site) seed
            train_epoch(model, datasets[name], loss_fn, seed, device)
            trained = {key: value.detach().clone() for key, value in model.state_dict().items()}
            updates.append((trained, len(datasets[name])))  # type: ignore[arg-type]
        global_weights = weighted_average(updates)
    return global_weights


def train_epoch(
    model: nn.Module, dataset: Dataset, loss_fn: nn.Module, seed: int, device: torch.device
) -> None:
    """One epoch of Adam from a fresh optimiser, batches shuffled by ``seed``."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    loader = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    torch.manual_seed(seed)
    for batch in loader:
        images, labels = batch["image"].to(device), batch["label"].to(device)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()


def weighted_average(updates: Sequence[tuple[Weights, int]]) -> Weights:
    """``sum(n_i * w_i) / sum(n_i)`` per key (every U-Net tensor is floating point).

    Written as ``n_0 * w_0``, then ``add_(w_i, alpha=n_i)``, then ``/ total``: the float32
    operations ``weighted_mean`` performs. ``sum(n_i * w_i)`` rounds differently (``add_`` with
    ``alpha`` is fused) by ~1e-7 per average, which 5 rounds of Adam amplify to ~3e-3.
    """
    (first, first_count), *rest = updates
    average = {key: tensor.mul(first_count) for key, tensor in first.items()}
    for weights, count in rest:
        for key, total in average.items():
            total.add_(weights[key], alpha=count)
    total_count = sum(count for _, count in updates)
    return {key: tensor.div_(total_count) for key, tensor in average.items()}


def timed(run: Callable[[], T]) -> tuple[T, float]:
    """``run()``'s result and its wall-clock time in seconds."""
    gc.collect()
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def max_abs_diff(a: Weights, b: Weights) -> float:
    """The largest absolute elementwise difference between two state dicts on the CPU."""
    return max(float((a[key].cpu() - b[key].cpu()).abs().max()) for key in a)


def measure(datasets: Mapping[str, Dataset]) -> tuple[list[float], list[float], float]:
    """Bare and medfed run times (alternating, ``REPEATS`` each) and the final weights' diff."""
    device = default_device()
    bare_s, medfed_s, diff = [], [], 0.0
    for _ in range(REPEATS):
        model = new_model()
        bare, seconds = timed(lambda: run_bare(datasets, model, device))
        bare_s.append(seconds)
        model = new_model()
        with tempfile.TemporaryDirectory() as checkpoints:
            federated, seconds = timed(lambda: run_medfed(datasets, model, Path(checkpoints)))
        medfed_s.append(seconds)
        diff = max(diff, max_abs_diff(bare, federated))
    return bare_s, medfed_s, diff


def main() -> None:
    """Runs both sides and prints their times, the overhead ratio and the weights check."""
    with tempfile.TemporaryDirectory() as directory:
        datasets = prepare_datasets(Path(directory))
    print(
        f"device: {default_device()}, {torch.get_num_threads()} threads, "
        f"load average {load_average()}; "
        f"{len(datasets)} sites x {CASES} cases {SIZE}x{SIZE}, U-Net 16-32-64-128, batch {BATCH}, "
        f"{ROUNDS} rounds x 1 epoch, FedAvg, Adam lr {LR:g}"
    )
    bare_s, medfed_s, diff = measure(datasets)
    print(f"bare PyTorch: {' '.join(f'{s:.2f}' for s in bare_s)} s (min {min(bare_s):.2f} s)")
    print(f"medfed:       {' '.join(f'{s:.2f}' for s in medfed_s)} s (min {min(medfed_s):.2f} s)")
    ratio = min(medfed_s) / min(bare_s)
    print(f"framework overhead (medfed / bare PyTorch): {ratio:.2f} (target <= {TARGET:.2f})")
    print(f"final weights, max abs diff medfed vs bare: {diff:.3g} (expected 0: same seeds)")
    print(f"load average at the end: {load_average()} (the ratio is noise when above the cores)")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
