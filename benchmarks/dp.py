"""Differential-privacy benchmarks; prints ratios and the numbers they come from.

``main()``: the time of one DP-SGD step (Opacus per-sample gradients, clipping, noise) over the
time of one non-private step, on a small 2D U-Net (channels 16-32-64, 64x64 images, batch 16),
with the secure noise source (the default) and with torch's generator (``secure_mode: false``).

``compare()`` (``--compare``): Dice of adaptive DP (calibrated noise + private median clipping)
vs fixed-clip DP at the same epsilon vs non-private FedAvg, on ``configs/dp_adaptive.yaml``.

``--recipe`` also times each DP recipe knob alone (``medfed.privacy.dp``): weight
standardisation under GroupNorm (against a non-private step of the same network), the EMA of
the parameters, and 4 augmented views per case (4 forward and backward passes per case).

Run: ``python benchmarks/dp.py [--recipe]`` or ``python benchmarks/dp.py --compare [--rounds N]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from medfed.config.loading import load_config
from medfed.models import build_model
from medfed.privacy.dp import Budget, DPTrainer, SitePrivacy, make_dp_compatible
from medfed.privacy.dp.accounting import Accountant
from medfed.privacy.dp.noise import NoiseMode
from medfed.simulator import run_simulation
from medfed.training import LocalTrainer, TrainSettings

CASES, BATCH, SIZE, REPEATS, VIEWS = 64, 16, 64, 9, 4
CONFIG = Path(__file__).resolve().parent.parent / "configs" / "dp_adaptive.yaml"


class _Images(Dataset):
    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(CASES, 1, SIZE, SIZE, generator=generator)
        self.labels = (torch.rand(CASES, 1, SIZE, SIZE, generator=generator) > 0.9).long()

    def __len__(self) -> int:
        return CASES

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def _variant(
    trainer: LocalTrainer | DPTrainer, **model: object
) -> tuple[LocalTrainer | DPTrainer, torch.nn.Module]:
    params = {"channels": (16, 32, 64), "strides": (2, 2), "num_res_units": 1, **model}
    return trainer, make_dp_compatible(build_model("unet", params, seed=0))[0]


def _seconds_per_step(
    trainer: LocalTrainer | DPTrainer, model: torch.nn.Module, device: torch.device, seed: int
) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    report = trainer.fit(model, _Images(), seed=seed)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / report.steps


def _policy(noise: NoiseMode, **recipe: object) -> SitePrivacy:
    # RDP: the budget check inside fit must not weigh on the step time (a PRV evaluation takes ~1 s)
    return SitePrivacy(
        budget=Budget(1e6, 1e-5),
        noise_multiplier=1.0,
        noise=noise,
        accountant=Accountant.RDP,
        **recipe,  # type: ignore[arg-type]
    )


def step_times(device: torch.device, *, recipe: bool = False) -> dict[str, tuple[float, float]]:
    """Each variant's median seconds per step and the median, over ``REPEATS`` rounds, of its
    time over its baseline's in the same round: DP-SGD with each private noise source against
    non-private training; with ``recipe``, also each DP recipe knob alone (system noise; weight
    standardisation under GroupNorm against its own non-private step). The variants take turns
    within each round, so a change of machine load weighs on all of them alike."""
    inner = LocalTrainer(task="segmentation", settings=TrainSettings(batch_size=BATCH), device=device)
    variants = {
        f"DP-SGD, {noise.value} noise": _variant(DPTrainer(inner, site="bench", policy=_policy(noise)))
        for noise in (NoiseMode.SECURE, NoiseMode.SYSTEM)
    }
    variants["non-private"] = _variant(inner)
    if recipe:
        system = NoiseMode.SYSTEM
        ws = {"norm": ["group", {"num_groups": 2}], "weight_standardization": True}
        variants["non-private, GroupNorm + WS"] = _variant(inner, **ws)
        variants["DP-SGD, GroupNorm + WS"] = _variant(
            DPTrainer(inner, site="bench", policy=_policy(system)), **ws
        )
        variants["DP-SGD, EMA 0.9"] = _variant(
            DPTrainer(inner, site="bench", policy=_policy(system, ema_decay=0.9))
        )
        variants[f"DP-SGD, {VIEWS} views"] = _variant(
            DPTrainer(inner, site="bench", policy=_policy(system, augmentation_multiplicity=VIEWS))
        )
    for trainer, model in variants.values():  # warm-up
        trainer.fit(model, _Images(), seed=0)
    rounds = [
        {name: _seconds_per_step(trainer, model, device, seed) for name, (trainer, model) in variants.items()}
        for seed in range(1, REPEATS + 1)
    ]
    return {
        name: (
            statistics.median(times[name] for times in rounds),
            statistics.median(times[name] / times[_baseline(name)] for times in rounds),
        )
        for name in variants
    }


def _baseline(name: str) -> str:
    return "non-private, GroupNorm + WS" if "WS" in name else "non-private"


def main(recipe: bool = False) -> None:
    """Prints each DP-SGD step time / the non-private step time (with ``recipe``, the recipe
    knobs' too: ``--recipe``)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    warnings.filterwarnings("ignore", category=UserWarning)
    times = step_times(device, recipe=recipe)
    print(
        f"device: {device}, {torch.get_num_threads()} threads, U-Net 16-32-64, {SIZE}x{SIZE}, batch {BATCH}"
    )
    print(f"median of {REPEATS} rounds, the variants taking turns in each")
    for name, (seconds, ratio) in times.items():
        print(f"{name:>28}: {seconds * 1e3:.1f} ms per step, {ratio:.2f}x non-private")


def compare(rounds: int | None = None) -> dict[str, float]:
    """Final mean held-out Dice on the training sites, and on the unseen site, per variant."""
    base = load_config(CONFIG)
    if rounds is not None:
        base = base.model_copy(update={"federation": base.federation.model_copy(update={"rounds": rounds})})
    dp = base.privacy.dp_sgd
    assert dp is not None
    variants = {
        "non-private": base.privacy.model_copy(update={"dp_sgd": None}),
        "DP fixed clip": base.privacy.model_copy(
            update={"dp_sgd": dp.model_copy(update={"clipping": "fixed"})}
        ),
        "DP adaptive (ADP-FL)": base.privacy,
    }
    scores = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, (name, privacy) in enumerate(variants.items()):
            config = base.model_copy(update={"privacy": privacy, "output_dir": Path(scratch) / f"v{index}"})
            outcome = run_simulation(config)
            row = outcome.summary[0]
            scores[name] = row.own_sites
            print(f"{name:>22}: Dice own sites {row.own_sites:.3f}, unseen site {row.unseen:.3f}")
            _print_epsilons(outcome.run_dir)
    return scores


def _print_epsilons(run_dir: Path) -> None:
    import csv

    with open(run_dir / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r["metric"] == "epsilon"]
    if rows:
        last = max(int(r["round"]) for r in rows)
        final = {r["site"]: float(r["value"]) for r in rows if int(r["round"]) == last}
        print("    " + ", ".join(f"{site} eps={value:.3f}" for site, value in sorted(final.items())))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--recipe", action="store_true", help="also time each DP recipe knob")
    arguments = parser.parse_args()
    if arguments.compare:
        compare(arguments.rounds)
    else:
        main(arguments.recipe)
