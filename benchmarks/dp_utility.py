"""The privacy-utility curve: Dice of DP federated training vs epsilon, per data family.

``python -m benchmarks dp_utility [--families ...] [--epsilons ...] [--seeds ...] [--rounds N]
[--size small|full] [--out DIR]`` runs, for every family, seed and epsilon (delta 1e-5, PRV
accountant, epsilon per training case):

* ``nonprivate``: FedAvg without DP (one cell per family and seed; it has no epsilon);
* ``public`` (``--pretrained`` only): the pretrained model as it is, before any fine-tuning,
  scored as the simulation scores its final model: what the public data alone gives, so that a
  ratio after pretraining is read against it (one cell per family and seed; no epsilon);
* ``fixed``: DP-SGD at every site, noise calibrated to the budget, fixed clipping threshold;
* ``adaptive``: medfed's adaptive DP (calibrated noise + private quantile clipping, ADP-FL);
* ``paper``: the ADP-FL paper's mechanism as stated (``benchmarks/dp_paper.py``): clipping at
  the 50th percentile of each batch's norms, Laplace noise scaled to it. Its real epsilon is
  reported: ``inf`` (data-dependent threshold), and the PLD epsilon of its Laplace noise if the
  threshold were public.

Every finished cell is one JSON file under ``--out/cells``; a rerun skips the cells already
there, so an interrupted run resumes one finished cell at a time. At the end the table of every
cell under ``--out`` is printed and written with the plot (Dice vs epsilon per method, own sites
and unseen site) to ``--out/dp_utility.json``, ``.md`` and ``.png``. One ``--out`` per recipe:
cells are keyed by family, method, epsilon, seed and start, not by the recipe.

``--pretrained`` starts every method (the non-private baseline too) from one model trained
without privacy on public generator data (``medfed.data.synthetic.public_sites``: scanner
profiles no private site uses); run it into the same ``--out`` to get DP from scratch and DP
after pretraining side by side.

The DP recipe (``Recipe``) is the same for ``fixed``, ``adaptive`` and ``paper``; its fields are
the ablation flags (``--dp-batch``, ``--dp-epochs``, ``--dp-lr``, ``--target-quantile``,
``--clip-lr``, ``--norm``, ``--weight-standardization``, ``--views``, ``--ema``), each mapped to
the configuration field a user sets (``cell_config``). A family runs its own measured recipe
(``RECIPES``, by family and start) where it has one; a flag given on the command line overrides
it for every family.
A size can give a family its own image side or cases scale (``Size.of``): at ``full``,
``brain_lesion`` has 64x64 images and sites of hundreds of cases like the other families.

``--search-clip`` first chooses adaptive clipping's target quantile and learning rate: a 3 x 3
grid of adaptive cells (first family, seed and epsilon, ``--search-size``, default ``medium``),
each trained on the sites' training cases less a validation quarter and scored by the Dice of
that validation quarter (never the test cases or the unseen site); the best pair is used by
every cell and the grid is recorded under ``clip_search`` in ``dp_utility.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medfed.config.schema import SimulationConfig
from medfed.data import SiteData, build_dataset, generate_federation, load_site, split_cases
from medfed.data.synthetic import public_sites
from medfed.files import atomic_write
from medfed.orchestration.data_checks import check_study
from medfed.orchestration.experiments import Experiment, plan_experiments
from medfed.orchestration.federation_data import FederationData
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.preconditions import check_config
from medfed.orchestration.simulation import ExperimentResult, ExperimentRunner
from medfed.orchestration.site import cpu_weights
from medfed.privacy.dp.accounting import Accountant, epsilon_spent
from medfed.report.summary import summarize
from medfed.training.trainer import LocalTrainer, Trainer, TrainSettings
from medfed.types import ServerState, Weights

METHODS = ("nonprivate", "public", "fixed", "adaptive", "paper")
UNTRAINED_PRIVATELY = ("nonprivate", "public")
"""The methods without DP (and without an epsilon)."""
FAMILIES = ("brain_lesion", "skin_lesion", "kidney_ct", "brain_tumour_mpmri")
EPSILONS = (1.0, 2.0, 4.0, 8.0, 16.0)
DELTA = 1e-5
PAPER_PERCENTILE = 50.0
PRETRAIN_EPOCHS = 5
SEARCH_QUANTILES = (0.3, 0.5, 0.7)
SEARCH_CLIP_LRS = (0.2, 0.5, 1.0)
VALIDATION_FRACTION = 0.25


@dataclass(frozen=True)
class Size:
    """How big each cell is.

    Attributes:
        image_size: Side of the 2D images (3D families: ``image_size_3d``).
        image_size_3d: Side of the 3D volumes.
        cases_scale: Multiplies every site's number of cases.
        rounds: Federated rounds.
        channels: U-Net channels per level.
        family_image_size: A 2D family's own ``image_size`` (``of``).
        family_cases_scale: A family's own ``cases_scale`` (``of``).
    """

    image_size: int
    image_size_3d: int
    cases_scale: float
    rounds: int
    channels: tuple[int, ...]
    family_image_size: Mapping[str, int] = field(default_factory=dict)
    family_cases_scale: Mapping[str, float] = field(default_factory=dict)

    def of(self, family: str) -> Size:
        """This size as ``family`` runs it: its own image side and cases scale where set."""
        return replace(
            self,
            image_size=self.family_image_size.get(family, self.image_size),
            cases_scale=self.family_cases_scale.get(family, self.cases_scale),
            family_image_size={},
            family_cases_scale={},
        )


SIZES = {
    "small": Size(image_size=16, image_size_3d=16, cases_scale=0.04, rounds=2, channels=(4, 8)),
    "medium": Size(image_size=32, image_size_3d=16, cases_scale=0.25, rounds=3, channels=(8, 16)),
    "full": Size(
        image_size=32,
        image_size_3d=16,
        cases_scale=0.5,
        rounds=4,
        channels=(8, 16, 32),
        family_image_size={"brain_lesion": 64},  # focal lesions: non-private Dice 0.43 at 32, 0.56 at 64
        family_cases_scale={"brain_lesion": 4.0},  # sites of 96-240 cases (0.5: 12-30, Dice 0.04)
    ),
}


@dataclass(frozen=True)
class Recipe:
    """Local training of the runs: non-private, and DP (shared by fixed, adaptive and paper).

    Attributes:
        batch_size: Non-private batch.
        local_epochs: Non-private local epochs per round.
        lr: Non-private Adam learning rate.
        dp_batch: DP expected (Poisson) batch: large batches cut the noise per sample.
        dp_epochs: DP local epochs per round (fewer steps: less noise per step for the budget).
        dp_lr: DP Adam learning rate.
        max_grad_norm: Fixed clip (the initial one for adaptive clipping).
        target_quantile: Adaptive clipping's quantile.
        clip_lr: Adaptive clipping's geometric learning rate.
        norm: The U-Net's normalisation, for every method: ``instance`` (medfed's default) or
            ``group`` (GroupNorm, 2 groups: the output layer has 2 channels).
        weight_standardization: Standardised convolutions (``model.params``), every method.
        augmentation_multiplicity: DP only: augmented views per case averaged before clipping
            (``privacy.dp_sgd.augmentation_multiplicity``; > 1 turns ``data.augment`` on).
        ema: DP only: decay of the parameters' moving average (``privacy.dp_sgd.ema``).
        slices: The 3D family trains a 2D U-Net on these slices of its volumes
            (``model.slices``; DP-SGD protects each patient's slices together), or ``None``.
    """

    batch_size: int = 16
    local_epochs: int = 1
    lr: float = 3e-3
    dp_batch: int = 64
    dp_epochs: int = 1
    dp_lr: float = 1e-2
    max_grad_norm: float = 1.0
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    norm: str = "instance"
    weight_standardization: bool = False
    augmentation_multiplicity: int = 1
    ema: float | None = None
    slices: str | None = None


RECIPES: dict[tuple[str, bool], Recipe] = {
    # GroupNorm + WS, 4 views, quantile 0.3 / clip lr 0.5 (stop 9), now at DP batch 16 (4x the DP
    # steps per round): adaptive DP 0.89x -> 1.00x / 1.05x; 0.93-0.95x of a non-private run at
    # DP's lr 0.01 (seeds 0 and 1)
    ("skin_lesion", False): Recipe(
        dp_batch=16,
        norm="group",
        weight_standardization=True,
        augmentation_multiplicity=4,
        target_quantile=0.3,
        clip_lr=0.5,
    ),
    # more DP steps per round (16-28 instead of 1-2): adaptive DP 0.16x -> 0.91x of non-private Dice
    ("kidney_ct", False): Recipe(dp_batch=16, dp_epochs=4),
    # 4-7 DP steps per round instead of 1-2: adaptive DP 0.89x -> 1.05x
    ("brain_tumour_mpmri", False): Recipe(dp_batch=16),
    # 32-48 DP steps per round instead of 2-3: adaptive DP 0.18x -> 1.15x / 0.92x (8 epochs:
    # 1.04x / 0.81x, 4: 0.44x / 0.28x)
    ("brain_lesion", False): Recipe(dp_epochs=16),
    # after pretraining too: 0.96x -> 1.05x own, 0.83x -> 0.96x unseen
    ("brain_lesion", True): Recipe(dp_epochs=4),
}
"""Each family's own DP recipe by start (``True``: after ``--pretrained``), where it differs from
``Recipe()`` (measured at epsilon 8 in docs/benchmarks.md, "The other families"); the command
line's recipe flags override it. kidney_ct after pretraining keeps ``Recipe()``'s 1-2 DP steps
per round (1.01x; its from-scratch recipe there: 0.94x)."""


@dataclass(frozen=True)
class Cell:
    """One run of the benchmark; ``epsilon`` is ``None`` for ``nonprivate``."""

    family: str
    method: str
    epsilon: float | None
    seed: int
    pretrained: bool = False

    @property
    def key(self) -> str:
        """The cell's file name (without ``.json``)."""
        budget = "none" if self.epsilon is None else f"eps{self.epsilon:g}"
        start = "-pretrained" if self.pretrained else ""
        return f"{self.family}-{self.method}-{budget}-seed{self.seed}{start}"


def plan_cells(
    families: Sequence[str],
    epsilons: Sequence[float],
    seeds: Sequence[int],
    *,
    methods: Sequence[str] = METHODS,
    pretrained: bool = False,
) -> list[Cell]:
    """Every cell, non-private first (one per family and seed; then ``public``, after
    pretraining only), then each DP method per epsilon."""
    cells = []
    for family in families:
        for seed in seeds:
            if "nonprivate" in methods:
                cells.append(Cell(family, "nonprivate", None, seed, pretrained))
            if "public" in methods and pretrained:
                cells.append(Cell(family, "public", None, seed, pretrained))
            dp = [method for method in methods if method not in UNTRAINED_PRIVATELY]
            cells += [Cell(family, m, e, seed, pretrained) for e in epsilons for m in dp]
    return cells


def cell_config(cell: Cell, size: Size, recipe: Recipe, run_dir: Path) -> SimulationConfig:
    """The simulation configuration of ``cell`` (at ``size.of(cell.family)``)."""
    size = size.of(cell.family)
    three_d = cell.family == "kidney_ct"
    dp = cell.method not in UNTRAINED_PRIVATELY
    privacy: dict[str, Any] = {}
    if dp:
        clipping = "adaptive" if cell.method == "adaptive" else "fixed"
        privacy = {
            "epsilon": cell.epsilon,
            "delta": DELTA,
            "accountant": "prv",
            "dp_sgd": {
                "max_grad_norm": recipe.max_grad_norm,
                "clipping": clipping,
                "target_quantile": recipe.target_quantile,
                "clip_lr": recipe.clip_lr,
                "augmentation_multiplicity": recipe.augmentation_multiplicity,
                "ema": recipe.ema,
                "secure_mode": False,  # torch's generator from OS entropy: same maths, faster
            },
        }
    return SimulationConfig.model_validate(
        {
            "seed": cell.seed,
            "output_dir": str(run_dir),
            "data": {
                "synthetic": {
                    "family": cell.family,
                    "image_size": size.image_size_3d if three_d else size.image_size,
                    "cases_scale": size.cases_scale,
                    "binary": True,
                },
                "augment": dp and recipe.augmentation_multiplicity > 1,
            },
            "model": {
                "name": "unet",
                "params": {
                    "channels": list(size.channels),
                    "strides": [2] * (len(size.channels) - 1),
                    "norm": ["group", {"num_groups": 2}] if recipe.norm == "group" else recipe.norm,
                    "weight_standardization": recipe.weight_standardization,
                },
                "slices": recipe.slices if three_d else None,
            },
            "training": {
                "batch_size": recipe.dp_batch if dp else recipe.batch_size,
                "local_epochs": recipe.dp_epochs if dp else recipe.local_epochs,
                "lr": recipe.dp_lr if dp else recipe.lr,
            },
            "federation": {"rounds": size.rounds, "evaluate_every": 0, "keep_last": 1},
            "strategies": [{"name": "fedavg"}],
            "baselines": {"centralized": False, "local": False},
            "privacy": privacy,
        }
    )


class _CellRunner(ExperimentRunner):
    """The simulation's runner, starting from ``initial`` weights when given (pretraining) and,
    with ``paper``, training every DP site with ``PercentileLaplaceTrainer``."""

    def __init__(self, *args: Any, initial: Weights | None, paper: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial = initial
        self.paper = paper

    def new_model(self) -> nn.Module:
        model = super().new_model()
        if self.initial is not None:
            model.load_state_dict(self.initial)
        return model

    def scored_as_it_is(self, experiment: Experiment) -> list[MetricRow]:
        """The initial model (the pretrained one) scored on every evaluation set as the
        simulation scores a model (``_evaluation_rows``), at round 0: nothing trained."""
        model = self.new_model()
        return self._evaluation_rows(
            ExperimentResult(experiment, ServerState(0, cpu_weights(model)), {}), model
        )

    def _trainer_for(self, experiment: Experiment, data: SiteData) -> Trainer:
        from benchmarks.dp_paper import PercentileLaplaceTrainer
        from medfed.privacy.dp import DPTrainer

        trainer = super()._trainer_for(experiment, data)
        if not self.paper or not isinstance(trainer, DPTrainer):
            return trainer
        return PercentileLaplaceTrainer(
            trainer.inner,
            site=trainer.site,
            policy=trainer.policy,
            ledger_path=trainer.ledger_path,
            job=trainer.job,
            percentile=PAPER_PERCENTILE,
        )


def run_cell(
    cell: Cell,
    size: Size,
    recipe: Recipe,
    run_dir: Path,
    data: FederationData,
    initial: Weights | None = None,
) -> dict[str, Any]:
    """Runs ``cell`` in ``run_dir`` from ``initial`` weights (``None``: the run's seeded
    initialisation) and returns its result (Dice, epsilons, steps, seconds)."""
    config = cell_config(cell, size, recipe, run_dir)
    check_config(config)
    start, cpu = time.perf_counter(), time.process_time()
    runner = _CellRunner(config, data, run_dir, initial=initial, paper=cell.method == "paper")
    experiment = plan_experiments(config, data)[0]
    if cell.method == "public":
        rows, rounds = runner.scored_as_it_is(experiment), 0
    else:
        rounds = runner.run(experiment).state.round
        rows = runner.metrics.rows()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    row = summarize(
        rows, {experiment.name: "federated"}, task="segmentation", unseen_site=config.data.unseen_site
    )[0]
    steps = {r.site: r.value for r in rows if r.metric == "steps" and r.round == rounds}
    epsilons = {r.site: r.value for r in rows if r.metric == "epsilon" and r.round == rounds}
    outcome: dict[str, Any] = {
        **asdict(cell),
        "dice_own": row.own_sites,
        "dice_unseen": row.unseen,
        "per_site": row.per_site,
        "epsilon_spent": epsilons,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rounds": rounds,
        "local_steps_last_round": steps,
    }
    if cell.method == "paper":
        outcome.update(_paper_epsilons(runner, config))
    return outcome


def _paper_epsilons(runner: ExperimentRunner, config: SimulationConfig) -> dict[str, Any]:
    """The paper mechanism's real epsilon (``inf``) and its Laplace PLD epsilon per site with
    the threshold treated as public, from each site's ledger (z, q, steps)."""
    from benchmarks.dp_paper import REAL_EPSILON, laplace_epsilon, trainable_dimensions
    from medfed.privacy.dp.ledger import load_ledger

    dimensions = trainable_dimensions(runner.new_model())
    laplace = {}
    for ledger in sorted((runner.run_dir / "privacy").rglob("*.jsonl")):
        history = load_ledger(ledger).history()
        z, q = history[0].noise_multiplier, history[0].sample_rate
        steps = sum(m.steps for m in history)
        gaussian = epsilon_spent(history, delta=DELTA, accountant=Accountant.PRV)
        laplace[ledger.stem] = {
            "claimed_gaussian_epsilon": gaussian,
            "laplace_public_threshold_epsilon": laplace_epsilon(
                dimensions=dimensions, noise_multiplier=z, sample_rate=q, steps=steps, delta=DELTA
            ),
        }
    return {"real_epsilon": REAL_EPSILON, "paper_epsilons": laplace, "dimensions": dimensions}


def run_cells(
    cells: Sequence[Cell], size: Size, recipes: Mapping[str, Recipe], out: Path, *, log: bool = True
) -> list[dict[str, Any]]:
    """Runs the cells whose JSON is not under ``out/cells`` yet, each with its family's recipe
    (``recipes``); returns every cell's result."""
    folder = out / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    data: dict[tuple[str, int], FederationData] = {}
    results = []
    for cell in cells:
        path = folder / f"{cell.key}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
            continue
        key, recipe = (cell.family, cell.seed), recipes[cell.family]
        config = cell_config(cell, size, recipe, out / "runs" / "data")
        if key not in data:
            data[key] = check_study(config, out / "data" / f"{cell.family}-seed{cell.seed}").passed()
        initial = (
            pretrained_weights(config, data[key], out / "pretrained", recipe) if cell.pretrained else None
        )
        outcome = run_cell(cell, size, recipe, out / "runs" / cell.key, data[key], initial)
        atomic_write(path, json.dumps(outcome, indent=1, default=_json).encode())
        if log:
            print(
                f"  {cell.key}: Dice own {outcome['dice_own']:.3f}, unseen {outcome['dice_unseen']:.3f}, "
                f"{outcome['seconds']:.0f} s",
                flush=True,
            )
        results.append(outcome)
    return results


def validation_split(data: FederationData, seed: int) -> FederationData:
    """Each training site's training cases split again, ``VALIDATION_FRACTION`` of them held
    out as its validation cases (in place of its test cases), without the unseen site: what
    the clip search scores on never includes a test case or the unseen site."""
    train, validation = {}, {}
    for name, site in data.train.items():
        train[name], validation[name] = split_cases(site, VALIDATION_FRACTION, seed)
    return FederationData(train=train, test=validation, unseen=None)


def search_clip(cell: Cell, size: Size, recipe: Recipe, out: Path, *, log: bool = True) -> dict[str, Any]:
    """Adaptive DP at ``cell``'s family, epsilon and seed for every target quantile x clip
    learning rate of the grid, each scored by the mean Dice of the sites' validation cases
    (``validation_split``); returns the grid and the best pair. Each point is one JSON under
    ``out/search`` (resumable)."""
    folder = out / "search"
    folder.mkdir(parents=True, exist_ok=True)
    config = cell_config(cell, size, recipe, out / "runs" / "data")
    data = check_study(config, out / "data" / f"{cell.family}-seed{cell.seed}").passed()
    validation = validation_split(data, cell.seed)
    grid = []
    for quantile in SEARCH_QUANTILES:
        for clip_lr in SEARCH_CLIP_LRS:
            key = f"{cell.key}-q{quantile:g}-lr{clip_lr:g}"
            path = folder / f"{key}.json"
            if not path.exists():
                point = replace(recipe, target_quantile=quantile, clip_lr=clip_lr)
                outcome = run_cell(cell, size, point, out / "runs" / f"search-{key}", validation)
                result = {
                    "target_quantile": quantile,
                    "clip_lr": clip_lr,
                    "dice_validation": outcome["dice_own"],
                }
                atomic_write(path, json.dumps({**result, "seconds": outcome["seconds"]}).encode())
                if log:
                    print(f"  search {key}: validation Dice {result['dice_validation']:.3f}", flush=True)
            grid.append(json.loads(path.read_text()))
    best = max(grid, key=lambda point: point["dice_validation"])
    return {"cell": cell.key, "size": asdict(size), "grid": grid, "chosen": best}


def pretrained_weights(
    config: SimulationConfig, data: FederationData, folder: Path, recipe: Recipe
) -> Weights:
    """The model of ``config`` trained without privacy on public generator data: the family's
    ``public_sites`` (scanner profiles no private site uses; no patient data, no privacy cost),
    ``PRETRAIN_EPOCHS`` epochs pooled. Cached in ``folder`` per family and seed."""
    synthetic = config.data.synthetic
    assert synthetic is not None
    path = folder / f"{synthetic.family}-seed{config.seed}.safetensors"
    if path.exists():
        return load_file(path)
    sites = generate_federation(
        public_sites(synthetic.family, synthetic.cases_scale),
        folder / f"{synthetic.family}-seed{config.seed}-data",
        image_size=synthetic.image_size,
        dims=synthetic.dims,
        seed=config.seed + 1000,
        binary=synthetic.binary,
    )
    cases = [case for name, site in sites.items() for case in load_site(name, site).cases]
    runner = ExperimentRunner(config, data, folder / "run")
    model = runner.new_model()
    preprocessing = config.preprocessing.settings(config.model)  # slices of 3D volumes, if set
    dataset = build_dataset(
        cases,
        task="segmentation",
        augment=False,
        seed=config.seed,
        preprocessing=preprocessing,
        training=True,
    )
    settings = TrainSettings(batch_size=recipe.batch_size, lr=recipe.lr, local_epochs=PRETRAIN_EPOCHS)
    LocalTrainer(task="segmentation", settings=settings).fit(model, dataset, seed=config.seed)
    weights = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(path))
    return weights


def _json(value: object) -> object:
    return str(value)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def table(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (family, method, epsilon): Dice own/unseen (mean over seeds), the ratio to
    the family's non-private Dice, epsilon spent (max over sites) and seconds per cell."""
    groups: dict[tuple[str, bool, str, float | None], list[dict[str, Any]]] = {}
    for result in results:
        key = (result["family"], result.get("pretrained", False), result["method"], result["epsilon"])
        groups.setdefault(key, []).append(result)
    baseline = {
        (family, pretrained): (_mean([r["dice_own"] for r in rs]), _mean([r["dice_unseen"] for r in rs]))
        for (family, pretrained, method, _), rs in groups.items()
        if method == "nonprivate"
    }
    rows = []
    for (family, pretrained, method, epsilon), rs in sorted(groups.items(), key=_order):
        own, unseen = _mean([r["dice_own"] for r in rs]), _mean([r["dice_unseen"] for r in rs])
        base = baseline.get((family, pretrained), (math.nan, math.nan))
        spent = [max(r["epsilon_spent"].values()) for r in rs if r["epsilon_spent"]]
        rows.append(
            {
                "family": family,
                "start": "pretrained" if pretrained else "scratch",
                "method": method,
                "epsilon": epsilon,
                "seeds": len(rs),
                "dice_own": own,
                "dice_unseen": unseen,
                "ratio_own": own / base[0] if base[0] else math.nan,
                "ratio_unseen": unseen / base[1] if base[1] else math.nan,
                "epsilon_spent": max(spent) if spent else None,
                "real_epsilon": rs[0].get("real_epsilon", max(spent) if spent else None),
                "seconds": _mean([r["seconds"] for r in rs]),
                "cpu_seconds": _mean([r.get("cpu_seconds", math.nan) for r in rs]),
            }
        )
    return _with_margins(rows)


def _with_margins(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each adaptive row's margin over fixed-clip DP at the same family, start and
    epsilon (``margin_own``, ``margin_unseen``: adaptive Dice minus fixed Dice; ``None`` on
    the other rows and where no fixed row exists)."""
    fixed = {(r["family"], r["start"], r["epsilon"]): r for r in rows if r["method"] == "fixed"}
    for r in rows:
        other = fixed.get((r["family"], r["start"], r["epsilon"])) if r["method"] == "adaptive" else None
        r["margin_own"] = None if other is None else r["dice_own"] - other["dice_own"]
        r["margin_unseen"] = None if other is None else r["dice_unseen"] - other["dice_unseen"]
    return rows


def adaptive_vs_fixed(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per family and start, the target "adaptive DP >= fixed-clip DP at every epsilon": the
    epsilons compared, the smallest margin on own sites and on the unseen site, and whether
    both are >= 0."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("margin_own") is not None:
            groups.setdefault((r["family"], r["start"]), []).append(r)
    return [
        {
            "family": family,
            "start": start,
            "epsilons": [r["epsilon"] for r in rs],
            "min_margin_own": min(r["margin_own"] for r in rs),
            "min_margin_unseen": min(r["margin_unseen"] for r in rs),
            "met": all(r["margin_own"] >= 0 and r["margin_unseen"] >= 0 for r in rs),
        }
        for (family, start), rs in groups.items()
    ]


def _order(item: tuple[tuple[str, bool, str, float | None], object]) -> tuple[object, ...]:
    family, pretrained, method, epsilon = item[0]
    return family, pretrained, METHODS.index(method), -1.0 if epsilon is None else epsilon


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| family | start | method | epsilon | Dice own | Dice unseen | x non-private own | x unseen "
        "| adaptive - fixed own / unseen | eps spent | real eps | wall s/cell | CPU s/cell |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eps = "-" if r["epsilon"] is None else f"{r['epsilon']:g}"
        spent = "-" if r["epsilon_spent"] is None else f"{r['epsilon_spent']:.2f}"
        real = "-" if r["real_epsilon"] is None else f"{r['real_epsilon']:.2f}"
        margin = "-" if r["margin_own"] is None else f"{r['margin_own']:+.3f} / {r['margin_unseen']:+.3f}"
        lines.append(
            f"| {r['family']} | {r['start']} | {r['method']} | {eps} | {r['dice_own']:.3f} | {r['dice_unseen']:.3f} | "
            f"{r['ratio_own']:.2f} | {r['ratio_unseen']:.2f} | {margin} | {spent} | {real} | "
            f"{r['seconds']:.0f} | {r['cpu_seconds']:.0f} |"
        )
    for c in adaptive_vs_fixed(rows):
        verdict = "met" if c["met"] else "MISSED"
        epsilons = ", ".join(f"{e:g}" for e in c["epsilons"])
        lines.append(
            f"\n{c['family']} ({c['start']}): adaptive >= fixed at every epsilon ({epsilons}): {verdict}; "
            f"smallest margin own {c['min_margin_own']:+.3f}, unseen {c['min_margin_unseen']:+.3f}"
        )
    return "\n".join(lines)


def legend_label(method: str, start: str, rows: Sequence[dict[str, Any]]) -> str:
    """The plot's name of ``method``'s line; the paper's mechanism is plotted at the epsilon it
    claims, so its label states the largest epsilon it really satisfies."""
    label = method if start == "scratch" else f"{method}, pretrained"
    real = [r["real_epsilon"] for r in rows if r["method"] == "paper" and r["start"] == start]
    if method == "paper" and real:
        label += f" (real epsilon {max(real):g})"
    return label


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Dice vs epsilon per method (the non-private Dice as a dashed line), one column per
    family, own sites on top and the unseen site below."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    families = sorted({r["family"] for r in rows})
    figure, axes = plt.subplots(2, len(families), figsize=(4 * len(families), 6.5), squeeze=False)
    for column, family in enumerate(families):
        for line, (metric, where) in enumerate((("dice_own", "own sites"), ("dice_unseen", "unseen site"))):
            axis = axes[line][column]
            for start, style in (("scratch", "-"), ("pretrained", ":")):
                for colour, method in enumerate(METHODS):
                    points = sorted(
                        (r["epsilon"], r[metric])
                        for r in rows
                        if r["family"] == family and r["method"] == method and r["start"] == start
                    )
                    label = legend_label(method, start, rows)
                    if method in UNTRAINED_PRIVATELY and points:
                        axis.axhline(
                            points[0][1],
                            linestyle="--" if start == "scratch" else ":",
                            color="black" if method == "nonprivate" else "grey",
                            label=label,
                        )
                    elif points:
                        xs, ys = [p[0] for p in points], [p[1] for p in points]
                        axis.plot(xs, ys, style, marker="o", color=f"C{colour}", label=label)
            axis.set_xscale("log", base=2)
            axis.set_title(f"{family}: {where}")
            axis.set_xlabel("epsilon (delta 1e-5, per case)")
            axis.set_ylabel("Dice")
            axis.set_ylim(0, 1)
    handles: dict[str, Any] = {}  # every method of every family, once: a family may lack one
    for axis in axes.flat:
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0][0].legend(list(handles.values()), list(handles), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks dp_utility", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--epsilons", nargs="+", type=float, default=list(EPSILONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--rounds", type=int, help="override the size's rounds")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=Path("runs/dp_utility"))
    # the recipe's flags default to None: the family's recipe (RECIPES) then holds
    parser.add_argument("--local-epochs", type=int, help="non-private local epochs per round")
    parser.add_argument("--lr", type=float, help="non-private Adam learning rate")
    parser.add_argument("--dp-batch", type=int)
    parser.add_argument("--dp-epochs", type=int)
    parser.add_argument("--dp-lr", type=float)
    parser.add_argument("--target-quantile", type=float)
    parser.add_argument("--clip-lr", type=float)
    parser.add_argument(
        "--weight-standardization",
        action="store_const",
        const=True,
        help="standardised convolutions (every method)",
    )
    parser.add_argument("--views", type=int, help="DP: augmented views per case averaged before clipping")
    parser.add_argument("--ema", type=float, help="DP: decay of the parameters' moving average")
    parser.add_argument(
        "--search-clip",
        action="store_true",
        help="choose the adaptive clip's quantile and lr by a 3x3 search on validation Dice first",
    )
    parser.add_argument("--search-size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--norm", choices=("instance", "group"), help="U-Net normalisation")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="start every method from a model pretrained on public generator data",
    )
    parser.add_argument(
        "--slices",
        choices=("axial", "coronal", "sagittal"),
        help="3D families: train a 2D U-Net on these slices, DP per patient (give its own --out)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 cores assumed)")
    return parser.parse_args(argv)


_FLAGS = {
    "local_epochs": "local_epochs",
    "lr": "lr",
    "dp_batch": "dp_batch",
    "dp_epochs": "dp_epochs",
    "dp_lr": "dp_lr",
    "target_quantile": "target_quantile",
    "clip_lr": "clip_lr",
    "norm": "norm",
    "weight_standardization": "weight_standardization",
    "views": "augmentation_multiplicity",
    "ema": "ema",
    "slices": "slices",
}
"""Command-line flag (argparse name) -> ``Recipe`` field."""


def recipe_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ``Recipe`` fields the command line sets (flags given, by field name)."""
    return {name: getattr(args, flag) for flag, name in _FLAGS.items() if getattr(args, flag) is not None}


def recipe_for(family: str, overrides: Mapping[str, Any], *, pretrained: bool = False) -> Recipe:
    """``family``'s recipe for its start (``RECIPES``, else ``Recipe()``) with ``overrides``
    (``recipe_flags``)."""
    return replace(RECIPES.get((family, pretrained), Recipe()), **overrides)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Runs the benchmark; returns the table's rows."""
    args = parse(argv)
    size = SIZES[args.size] if args.rounds is None else replace(SIZES[args.size], rounds=args.rounds)
    overrides = recipe_flags(args)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("medfed").setLevel(logging.ERROR)
    search = None
    if args.search_clip:
        cell = Cell(args.families[0], "adaptive", args.epsilons[0], args.seeds[0])
        search = search_clip(cell, SIZES[args.search_size], recipe_for(cell.family, overrides), args.out)
        chosen = search["chosen"]
        overrides |= {"target_quantile": chosen["target_quantile"], "clip_lr": chosen["clip_lr"]}
    recipes = {family: recipe_for(family, overrides, pretrained=args.pretrained) for family in args.families}
    cells = plan_cells(
        args.families, args.epsilons, args.seeds, methods=args.methods, pretrained=args.pretrained
    )
    print(f"dp_utility: {len(cells)} cells, size {args.size} {size}, {recipes}", flush=True)
    run_cells(cells, size, recipes, args.out)
    results = [json.loads(path.read_text()) for path in sorted((args.out / "cells").glob("*.json"))]
    rows = table(results)
    text = format_table(rows)
    print(text)
    summary = {
        "size": asdict(size),
        "recipes": {family: asdict(recipe) for family, recipe in recipes.items()},
        "clip_search": search,
        "rows": rows,
    }
    atomic_write(args.out / "dp_utility.json", json.dumps(summary, indent=1, default=_json).encode())
    (args.out / "dp_utility.md").write_text(text + "\n")
    plot(rows, args.out / "dp_utility.png")
    return rows


if __name__ == "__main__":
    main()
