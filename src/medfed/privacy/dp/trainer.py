"""DP-SGD at a site: a trainer that wraps ``LocalTrainer`` behind the same ``fit`` interface.

Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, through Opacus's
``PrivacyEngine`` (Yousefpour et al. 2021): Poisson-sampled batches, per-sample gradients
clipped to L2 norm ``C``, Gaussian noise ``N(0, z^2 C^2)`` on their sum. The site's budget is
checked with the accountant *before* a round: a round that would exceed it is not trained and
``PrivacyBudgetExceeded`` is raised, so the round loop sees the site as absent. The check and the
release's entry in the dataset's append-only ledger are one locked step before training
(``medfed.privacy.dp.ledger``): every round that trains is charged, for every job on the data.

The privacy unit is the patient (``medfed.privacy.dp.patients``): the trainer Poisson-samples
*patients*, with all their samples, sums each patient's per-sample gradients, and clips and
noises those sums, so a patient with many slices or patches moves a step by at most ``C`` and
epsilon is per patient. With one sample per patient (every built-in case without slicing) this
is exactly sample-level DP-SGD.

Sampling is Poisson with rate ``q = 1 / ceil(P / b)`` and ``ceil(P / b)`` steps per epoch over
the ``P`` patients, with ``b = max(1, B * P // N)`` the expected patients of a batch of about
``B`` of the ``N`` samples; built here rather than by Opacus (whose ``int(1 / q)`` gives 92 steps at
``q = 1/93`` and then accounts ``q = 1/92``), so that what is charged is exactly what is
sampled; empty batches (``q * P`` can be below 1) are zero-length tensors and release noise only.

Noise is either fixed or calibrated (ADP-FL, Saha and Ukwatta, SPIE Medical Imaging 2026): the
noise multiplier that spends the budget exactly over the planned rounds. Clipping is either fixed
or adaptive: per round, ``C`` moves geometrically toward a target quantile of the per-patient
gradient norms, estimated privately (Andrew et al., NeurIPS 2021) and charged to the budget.

The noise and the Poisson sampling come from the site's own ``NoiseSource`` (``policy.noise``):
by default a CSPRNG keyed from OS entropy, never from the run's seed (see
``medfed.privacy.dp.noise``).
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from opacus import PrivacyEngine
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from medfed.errors import ConfigError, DataError, PrivacyBudgetExceeded
from medfed.privacy.dp import grad_samplers  # noqa: F401  (registers the standardised convolutions with Opacus)
from medfed.privacy.dp.accounting import (
    DEFAULT_ACCOUNTANT,
    Accountant,
    Budget,
    Mechanism,
    calibrate_noise,
    epsilon_spent,
)
from medfed.privacy.dp.averaging import ParameterEMA
from medfed.privacy.dp.ledger import (
    PrivacyLedger,
    append_entry,
    clip_entry,
    load_ledger,
    locked,
    release_entry,
)
from medfed.privacy.dp.models import dp_incompatibilities
from medfed.privacy.dp.noise import NoiseMode, NoiseSource, noise_source
from medfed.privacy.dp.optimizer import QuantileCountingDPOptimizer, SourcedDPOptimizer
from medfed.privacy.dp.patients import (
    PATIENT_KEY,
    PatientIndexed,
    PatientPoissonSampler,
    PrivacyUnit,
    patient_batch_size,
    patient_groups,
    sample_patients,
    summed_per_patient,
)
from medfed.privacy.dp.quantile import count_noise_std, geometric_update
from medfed.privacy.dp.views import MultiViewDataset, average_views, flatten_views
from medfed.seeding import derive_seed
from medfed.strategies.base import LocalHooks
from medfed.training.trainer import (
    FitReport,
    LocalTrainer,
    TrainSettings,
    finite_value,
    make_optimizer,
    run_epochs,
)
from medfed.types import Scalar

logger = logging.getLogger(__name__)

MAX_VIEWS = 32
"""Most augmented views per case: each one costs a forward and backward pass."""

PRIVACY_KEYS = frozenset({"noise_multiplier", "max_grad_norm", "epsilon", "delta", "accountant", "clip"})
"""Keys a round's task config may not carry: the site's policy comes from the site alone."""


@dataclass(frozen=True)
class AdaptiveClipping:
    """Per-round private quantile clipping (Andrew et al. 2021).

    Attributes:
        target_quantile: The quantile of per-patient gradient norms that ``C`` tracks (gamma).
        lr: Geometric learning rate of ``C`` (eta_C).
        count_budget_fraction: Share of the mechanism's precision ``z^-2`` spent on the count.
        bounds: ``(min, max)`` allowed thresholds.
    """

    target_quantile: float = 0.5
    lr: float = 0.2
    count_budget_fraction: float = 0.05
    bounds: tuple[float, float] = (1e-4, 1e4)

    def __post_init__(self) -> None:
        if not 0.0 < self.target_quantile < 1.0:
            raise ValueError(f"target_quantile must lie in (0, 1), got {self.target_quantile}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 < self.count_budget_fraction < 1.0:
            raise ValueError(f"count_budget_fraction must lie in (0, 1), got {self.count_budget_fraction}")
        if not 0.0 < self.bounds[0] < self.bounds[1]:
            raise ValueError(f"bounds must satisfy 0 < min < max, got {self.bounds}")


@dataclass(frozen=True)
class SitePrivacy:
    """One site's DP-SGD policy, from the site's own configuration.

    Attributes:
        budget: The (epsilon, delta) the site may spend over the whole run.
        accountant: ``prv`` (the default, tight) or ``rdp``.
        noise_multiplier: Fixed ``z``; ``None`` calibrates ``z`` at a job's first round to spend
            what earlier releases of the data left of ``budget`` over ``planned_rounds`` rounds
            of that round's local steps.
        planned_rounds: Rounds the budget must last (needed when ``noise_multiplier`` is None).
        max_grad_norm: The clipping threshold ``C`` (the initial one with adaptive clipping).
        adaptive_clipping: Per-round quantile clipping, or ``None`` for a fixed ``C``.
        noise: Where the noise and the sampling come from; ``REPRODUCIBLE`` is NOT PRIVATE.
        augmentation_multiplicity: ``K`` augmented views of every sampled case, their
            gradients averaged before clipping (``medfed.privacy.dp.views``); 1 is plain DP-SGD.
        ema_decay: Decay of the moving average of the parameters over the round's steps that
            the site returns (``medfed.privacy.dp.averaging``), or ``None`` for the last iterate.
        unit: What one guarantee protects: every sample of a patient (the default) or one
            training sample (then a patient with ``k`` samples has only group privacy).
    """

    budget: Budget
    accountant: Accountant = DEFAULT_ACCOUNTANT
    noise_multiplier: float | None = None
    planned_rounds: int | None = None
    max_grad_norm: float = 1.0
    adaptive_clipping: AdaptiveClipping | None = None
    noise: NoiseMode = NoiseMode.SECURE
    augmentation_multiplicity: int = 1
    ema_decay: float | None = None
    unit: PrivacyUnit = PrivacyUnit.PATIENT

    def __post_init__(self) -> None:
        if not 1 <= self.augmentation_multiplicity <= MAX_VIEWS:
            raise ValueError(
                f"augmentation_multiplicity must lie in [1, {MAX_VIEWS}], got {self.augmentation_multiplicity}"
            )
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.noise_multiplier is None and (self.planned_rounds is None or self.planned_rounds < 1):
            raise ValueError("planned_rounds >= 1 is needed to calibrate the noise multiplier")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ValueError(f"noise_multiplier must be > 0, got {self.noise_multiplier}")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


@dataclass(frozen=True)
class PoissonPlan:
    """A round's Poisson sampling: each step takes every unit (patient) with probability
    ``sample_rate``.

    Attributes:
        sample_rate: ``q = 1 / steps_per_epoch``.
        steps_per_epoch: ``ceil(N / B)`` for ``N`` units and ``B`` expected per batch, the
            batches of a plain loader, so ``q * N ~ B``.
        epochs: Local epochs of the round.
        expected_batch_size: ``N // steps_per_epoch`` (at least 1), what the noisy sum is
            divided by (Opacus's ``int(N * q)`` is 0 at ``N = 49``: 0.999...).
    """

    sample_rate: float
    steps_per_epoch: int
    epochs: int
    expected_batch_size: int

    @property
    def steps(self) -> int:
        """Steps of the round, each one charged at ``sample_rate``."""
        return self.steps_per_epoch * self.epochs


def poisson_plan(cases: int, batch_size: int, epochs: int) -> PoissonPlan:
    """The Poisson sampling of a round over ``cases`` units with expected batch ``batch_size``.

    Raises:
        ValueError: A count is not positive.
    """
    if cases < 1 or batch_size < 1 or epochs < 1:
        raise ValueError(f"cases, batch_size and epochs must be >= 1, got {cases}, {batch_size}, {epochs}")
    batches = -(-cases // batch_size)
    return PoissonPlan(
        sample_rate=1.0 / batches,
        steps_per_epoch=batches,
        epochs=epochs,
        expected_batch_size=cases // batches,
    )


def poisson_loader(
    dataset: Dataset, plan: PoissonPlan, source: NoiseSource, groups: Sequence[Sequence[int]]
) -> DataLoader:
    """A loader of ``plan.steps_per_epoch`` Poisson batches at ``plan.sample_rate``, drawn with
    ``source``, over the units ``groups`` (the sample indices of each patient): a batch holds
    every sample of its patients; an empty one is the dataset's dictionary with zero-length
    tensors."""
    sampler = PatientPoissonSampler(groups, plan.sample_rate, source, steps=plan.steps_per_epoch)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=functools.partial(_collate, dataset))


def _collate(dataset: Dataset, batch: list[Mapping[str, torch.Tensor]]) -> Mapping[str, torch.Tensor]:
    if batch:
        return default_collate(batch)
    example = dataset[0]
    return {key: torch.empty((0, *value.shape), dtype=value.dtype) for key, value in example.items()}


class DPTrainer:
    """DP-SGD around a ``LocalTrainer``: same ``fit``, same loss, settings and device.

    Args:
        inner: The non-private trainer whose task, settings and device are used.
        site: The site's name (for messages).
        policy: The site's DP policy.
        ledger_path: The ledger of the site's dataset, shared by every job on that data
            (``None``: kept in memory, for tests).
        job: Identifies the job in the ledger (its calibrated noise and clipping threshold).
    """

    def __init__(
        self,
        inner: LocalTrainer,
        *,
        site: str,
        policy: SitePrivacy,
        ledger_path: Path | None = None,
        job: str = "local",
    ) -> None:
        self.inner = inner
        self.site = site
        self.policy = policy
        self.ledger_path = ledger_path
        self.job = job
        self.ledger = PrivacyLedger()
        with locked(ledger_path):  # a damaged ledger stops the site now, not at its first round
            self._reload()

    @property
    def settings(self) -> TrainSettings:
        """The inner trainer's default settings."""
        return self.inner.settings

    @property
    def epsilon(self) -> float:
        """Epsilon spent on the site's data so far, by every job, at the budget's delta."""
        with locked(self.ledger_path):
            self._reload()
        return self._epsilon(self.ledger.history())

    def spent(self) -> dict[str, float]:
        """The privacy spent on the site's data so far, by every job: ``epsilon`` at the
        budget's ``delta``."""
        return {"epsilon": self.epsilon, "delta": self.policy.budget.delta}

    def fit(
        self,
        model: nn.Module,
        dataset: Dataset,
        *,
        seed: int,
        hooks: LocalHooks | None = None,
        config: Mapping[str, Scalar] | None = None,
    ) -> FitReport:
        """Trains ``model`` in place with DP-SGD, unless that would exceed the budget.

        Raises:
            PrivacyBudgetExceeded: The round would take the site past its budget (not trained).
            ConfigError: ``model`` has layers DP-SGD cannot train, or ``config`` tries to set a
                privacy parameter.
        """
        settings = self._settings(config or {})
        model.to(self.inner.device).train()
        _check_model(model)
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise DataError(self.site, None, "no training case: DP-SGD needs at least one")
        patients = self._patients(dataset)
        groups = patient_groups(patients)
        batch = patient_batch_size(settings.batch_size, samples=len(patients), patients=len(groups))
        plan = poisson_plan(len(groups), batch, settings.local_epochs)
        source = noise_source(self.policy.noise, derive_seed(seed, "dp_noise"))
        planned, clip = self._charge(plan, seed)
        views = self.policy.augmentation_multiplicity
        samples = dataset if views == 1 else MultiViewDataset(dataset, views)
        loader = poisson_loader(PatientIndexed(samples, patients), plan, source, groups)
        report, new_clip = self._train(
            model, loader, planned, clip, seed, settings, hooks or LocalHooks(), source=source, plan=plan
        )
        if new_clip is not None:
            self._append(clip_entry(job=self.job, clip=new_clip))
        return report

    def _patients(self, dataset: Dataset) -> list[str]:
        """The patient of each sample; logs how many patients the site's samples come from."""
        try:
            patients = sample_patients(dataset, self.policy.unit)
        except ValueError as error:
            raise DataError(self.site, None, str(error)) from None
        count = len(set(patients))
        logger.info(
            "site '%s': DP-SGD per %s: %d samples of %d %ss",
            self.site,
            self.policy.unit,
            len(patients),
            count,
            self.policy.unit,
        )
        return patients

    # ----- ledger and budget -----------------------------------------------------------------
    def _charge(self, plan: PoissonPlan, seed: int) -> tuple[Mechanism, float]:
        """Checks the budget and records the round's release, as one locked step before it
        trains; returns the mechanism charged and the clipping threshold to train with."""
        with locked(self.ledger_path):
            self._reload()  # other jobs may have charged since
            planned = Mechanism(self._noise_multiplier(plan), plan.sample_rate, plan.steps)
            self._warn_mixed_units()
            self._check_budget(planned)
            clip = self.ledger.clip(self.job) or self.policy.max_grad_norm
            entry = release_entry(
                job=self.job,
                seed=seed,
                mechanism=planned,
                clip=clip,
                budget=self.policy.budget,
                accountant=self.policy.accountant,
                unit=self.policy.unit,
            )
            self._append(entry)
        return planned, clip

    def _warn_mixed_units(self) -> None:
        """Logs a warning when earlier releases of the data protected another unit: they count
        at their own epsilon, which bounds a patient's only if each patient had one sample."""
        others = sorted({release.unit for release in self.ledger.releases} - {self.policy.unit})
        if others:
            logger.warning(
                "site '%s': the privacy ledger holds releases per %s; they count at their own epsilon, "
                "which is per %s only where each patient had one training sample",
                self.site,
                " and ".join(others),
                self.policy.unit,
            )

    def _reload(self) -> None:
        if self.ledger_path is not None:
            self.ledger = load_ledger(self.ledger_path)

    def _append(self, entry: Mapping[str, object]) -> None:
        append_entry(self.ledger_path, entry)
        self.ledger = self.ledger.with_entry(entry)

    def _settings(self, config: Mapping[str, Scalar]) -> TrainSettings:
        forbidden = sorted(PRIVACY_KEYS & set(config))
        if forbidden:
            raise ConfigError(
                f"site '{self.site}': a task may not set privacy parameters {forbidden}; "
                "the site's own configuration decides them"
            )
        return self.inner.settings.overridden(config)

    def _epsilon(self, history: list[Mechanism]) -> float:
        return epsilon_spent(history, delta=self.policy.budget.delta, accountant=self.policy.accountant)

    def _noise_multiplier(self, plan: PoissonPlan) -> float:
        """The policy's fixed ``z``, or the job's calibrated one (fixed at its first round)."""
        if self.policy.noise_multiplier is not None:
            return self.policy.noise_multiplier
        earlier = self.ledger.noise_multiplier(self.job)
        if earlier is not None:
            return earlier
        assert self.policy.planned_rounds is not None  # checked by SitePrivacy
        try:
            z = calibrate_noise(
                self.policy.budget,
                sample_rate=plan.sample_rate,
                steps=plan.steps * self.policy.planned_rounds,
                accountant=self.policy.accountant,
                spent=self.ledger.history(),
            )
        except ValueError:
            spent = self._epsilon(self.ledger.history())
            raise self._declined(spent, math.inf) from None
        logger.info(
            "site '%s': noise multiplier %.4f spends what is left of its budget in %d rounds",
            self.site,
            z,
            self.policy.planned_rounds,
        )
        return z

    def _declined(self, spent: float, would_spend: float) -> PrivacyBudgetExceeded:
        error = PrivacyBudgetExceeded(
            self.site, spent=spent, would_spend=would_spend, budget=self.policy.budget.epsilon
        )
        logger.warning("%s", error)
        return error

    def _check_budget(self, planned: Mechanism) -> None:
        earlier = self.ledger.history()
        would_spend = self._epsilon([*earlier, planned])
        if would_spend > self.policy.budget.epsilon:
            raise self._declined(self._epsilon(earlier), would_spend)

    # ----- training --------------------------------------------------------------------------
    def _train(
        self,
        model: nn.Module,
        loader: DataLoader,
        planned: Mechanism,
        clip: float,
        seed: int,
        settings: TrainSettings,
        hooks: LocalHooks,
        *,
        source: NoiseSource,
        plan: PoissonPlan,
    ) -> tuple[FitReport, float | None]:
        with warnings.catch_warnings():  # the loader already samples Poisson batches at planned q
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            # Opacus's own secure mode needs torchcsprng; ``source`` draws the noise instead.
            engine = PrivacyEngine(accountant=self.policy.accountant.value, secure_mode=False)
            grad_hooks, optimizer, _ = engine.make_private(
                module=model,
                optimizer=make_optimizer(model, settings),
                data_loader=loader,
                noise_multiplier=planned.noise_multiplier,
                max_grad_norm=clip,
                poisson_sampling=False,
                wrap_model=False,  # ``loader`` already samples
            )
        grad_hooks.forbid_grad_accumulation()
        optimizer.expected_batch_size = plan.expected_batch_size  # patients, not samples
        optimizer = self._sourced(optimizer, engine, planned, source)
        try:
            losses = self._epochs(model, optimizer, loader, settings, hooks, seed)
        finally:
            grad_hooks.cleanup()
        accounted = [(planned.noise_multiplier, planned.sample_rate, planned.steps)]
        if engine.accountant.history != accounted:
            raise RuntimeError(f"Opacus accounted {engine.accountant.history}, medfed planned {accounted}")
        finite = [value for value in losses if math.isfinite(value)]
        loss = sum(finite) / len(finite) if finite else math.nan
        logger.info("site '%s': mean private training loss %.4f (not sent)", self.site, loss)
        report = FitReport(steps=len(losses), loss=loss, lr=settings.lr, dp_protected=True)
        return report, self._next_clip(optimizer, clip)

    def _sourced(
        self, optimizer: DPOptimizer, engine: PrivacyEngine, planned: Mechanism, source: NoiseSource
    ) -> DPOptimizer:
        """Opacus's optimiser rebuilt to draw its noise from ``source`` (and, with adaptive
        clipping, to release the private unclipped count)."""
        adaptive = self.policy.adaptive_clipping
        common = {
            "noise_multiplier": planned.noise_multiplier,
            "max_grad_norm": optimizer.max_grad_norm,
            "expected_batch_size": optimizer.expected_batch_size,
            "source": source,
        }
        sourced = (
            SourcedDPOptimizer(optimizer.original_optimizer, **common)
            if adaptive is None
            else QuantileCountingDPOptimizer(
                optimizer.original_optimizer,
                count_std=count_noise_std(planned.noise_multiplier, adaptive.count_budget_fraction),
                **common,
            )
        )
        sourced.attach_step_hook(engine.accountant.get_optimizer_hook_fn(sample_rate=planned.sample_rate))
        return sourced

    def _next_clip(self, optimizer: DPOptimizer, clip: float) -> float | None:
        adaptive = self.policy.adaptive_clipping
        if adaptive is None or not isinstance(optimizer, QuantileCountingDPOptimizer):
            return None
        fraction = sum(optimizer.fractions) / max(len(optimizer.fractions), 1)
        new = geometric_update(
            clip, fraction, target_quantile=adaptive.target_quantile, lr=adaptive.lr, bounds=adaptive.bounds
        )
        logger.info(
            "site '%s': private unclipped fraction %.3f, clip %.4g -> %.4g", self.site, fraction, clip, new
        )
        return new

    def _epochs(
        self,
        model: nn.Module,
        optimizer: DPOptimizer,
        loader: DataLoader,
        settings: TrainSettings,
        hooks: LocalHooks,
        seed: int,
    ) -> list[float]:
        decay = self.policy.ema_decay
        average = None if decay is None else ParameterEMA(model, decay)

        def step(batch: Mapping[str, torch.Tensor]) -> float:
            loss = self._step(model, optimizer, batch, hooks)
            if average is not None:
                average.update()
            return loss

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            losses = run_epochs(loader, settings.local_epochs, seed, step)
        if average is not None:
            average.load_into_model()
        return losses

    def _step(
        self, model: nn.Module, optimizer: DPOptimizer, batch: Mapping[str, torch.Tensor], hooks: LocalHooks
    ) -> float:
        optimizer.zero_grad(set_to_none=True)
        patient = batch[PATIENT_KEY]
        if len(patient) == 0:
            value = math.nan  # an empty Poisson batch: the step releases noise only
            for parameter in optimizer.params:
                parameter.grad_sample = torch.zeros((0, *parameter.shape), device=parameter.device)
        else:
            samples = {key: tensor for key, tensor in batch.items() if key != PATIENT_KEY}
            views = self.policy.augmentation_multiplicity
            loss = self.inner.batch_loss(model, samples if views == 1 else flatten_views(samples))
            loss.backward()
            value = finite_value(loss)
            for parameter in optimizer.params:  # one row per patient: Opacus clips each row to C
                if parameter.grad_sample is not None:  # a sample's K views averaged, then summed per patient
                    per_sample = (
                        parameter.grad_sample if views == 1 else average_views(parameter.grad_sample, views)
                    )
                    parameter.grad_sample = summed_per_patient(per_sample, patient)
        if optimizer.pre_step():
            _post_process(model, optimizer, hooks)
            optimizer.original_optimizer.step()
        return value


def _post_process(model: nn.Module, optimizer: DPOptimizer, hooks: LocalHooks) -> None:
    """Applies the strategy's hooks to the privatised gradient (data-independent: still DP)."""
    penalty = hooks.penalty(model)
    if penalty is not None:
        params = list(optimizer.params)
        grads = torch.autograd.grad(penalty, params, allow_unused=True)
        for parameter, grad in zip(params, grads, strict=True):
            if grad is not None:
                parameter.grad = grad if parameter.grad is None else parameter.grad + grad
    hooks.after_backward(model)


def _check_model(model: nn.Module) -> None:
    problems = dp_incompatibilities(model)
    if problems:
        raise ConfigError(
            "the model cannot be trained with DP-SGD (build it with "
            f"medfed.privacy.dp.make_dp_compatible): {'; '.join(problems)}"
        )
