"""The gradient-inversion harness: one attack per protection level, scored against the truth.

The attacked site sends the gradient of one local step on one batch (FedSGD, as in Geiping
et al. 2020) of a classifier initialised from ``AttackConfig.seed``. The
attacker (an honest-but-curious server) knows the model and the batch size and, unless
``labels="idlg"``, the labels. It then runs ``invert_gradients`` on what each protection lets
it see (``medfed.attacks.defences``):

* ``none``: the site's gradient;
* ``dp-<sigma>``: the gradient clipped to ``clip_norm`` plus Gaussian noise of std
  ``sigma * clip_norm`` per coordinate;
* ``secagg-<K>``: the sum of the gradients of ``K`` sites (each with its own batch). The attacker
  is given the labels of all ``K * B`` images and reconstructs all of them; each of the attacked
  site's images is scored against its best-matching reconstruction (the attacker's best case).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from medfed.attacks.data import SiteBatch, synthetic_batches
from medfed.attacks.defences import gaussian_mechanism, global_norm, secure_sum
from medfed.attacks.inversion import Gradients, InversionConfig, invert_gradients, model_gradients
from medfed.attacks.labels import infer_label_idlg, last_linear_weight_gradient
from medfed.attacks.metrics import Match, match_reconstructions
from medfed.attacks.models import VICTIMS, build_victim
from medfed.errors import ConfigError
from medfed.seeding import derive_seed
from medfed.training.losses import loss_for

LabelSource = Literal["known", "idlg"]
"""``known``: the attacker is given the labels; ``idlg``: inferred from the gradient (B = 1)."""


@dataclass(frozen=True)
class AttackConfig:
    """What to attack and under which protections.

    Attributes:
        model: Victim name in ``VICTIMS`` (``convnet``, ``convnet-gn``, ``resnet``, ``densenet``).
        batch_size: Images in the attacked site's batch ``B``.
        image_size: Side of the square images, a multiple of 4, >= 16.
        inversion: Attack hyperparameters.
        noise_multipliers: DP noise levels ``sigma`` to measure, one attack each.
        clip_norm: DP clipping bound ``C`` on the update's L2 norm.
        secagg_sites: Sites ``K`` summed by secure aggregation (0 = do not measure it).
        labels: Where the attacker's labels come from.
        seed: Seed of the data, the model, the noise and the attack.

    Raises:
        ConfigError: If a value is out of range or the model name is unknown.
    """

    model: str = "convnet"
    batch_size: int = 2
    image_size: int = 32
    inversion: InversionConfig = field(default_factory=InversionConfig)
    noise_multipliers: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    clip_norm: float = 1.0
    secagg_sites: int = 4
    labels: LabelSource = "known"
    seed: int = 0

    def __post_init__(self) -> None:
        VICTIMS.get(self.model)  # raises UnknownNameError listing the valid names
        _require(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _require(
            self.image_size >= 16 and self.image_size % 4 == 0,
            f"image_size must be a multiple of 4 and >= 16, got {self.image_size}",
        )
        _require(all(s >= 0 for s in self.noise_multipliers), "noise multipliers must be >= 0")
        _require(
            len(set(self.noise_multipliers)) == len(self.noise_multipliers),
            f"noise multipliers must be distinct, got {self.noise_multipliers}",
        )
        _require(self.clip_norm > 0, f"clip_norm must be > 0, got {self.clip_norm}")
        _require(
            self.secagg_sites == 0 or self.secagg_sites >= 2,
            f"secagg_sites must be 0 (off) or >= 2, got {self.secagg_sites}",
        )
        _require(
            self.labels in ("known", "idlg"),
            f"labels must be 'known' or 'idlg', got {self.labels!r}",
        )
        _require(
            self.labels != "idlg" or self.batch_size == 1,
            f"iDLG label inference needs batch_size 1, got {self.batch_size}; use labels='known'",
        )


@dataclass(frozen=True)
class Scenario:
    """One protection level.

    Attributes:
        name: Short identifier, also used in file names (``none``, ``dp-0.01``, ``secagg-4``).
        noise_multiplier: DP ``sigma`` applied to each site's update, or ``None`` for no DP.
        num_sites: Sites whose updates are summed (1 = no secure aggregation).
    """

    name: str
    noise_multiplier: float | None = None
    num_sites: int = 1

    @property
    def description(self) -> str:
        """What the attacker sees, in words."""
        if self.num_sites > 1:
            return f"sum of {self.num_sites} sites' updates (secure aggregation)"
        if self.noise_multiplier is not None:
            return f"clipped update + Gaussian noise, sigma={self.noise_multiplier:g}"
        return "the site's update"


@dataclass(frozen=True)
class ScenarioResult:
    """The attack's outcome under one protection level.

    Attributes:
        scenario: The protection level.
        match: Reconstructions matched to the attacked site's images, with PSNR and SSIM.
        attack_loss: Final attack loss of the kept restart.
        labels_correct: Whether iDLG inferred the right label (``None`` when labels were given).
        seconds: Wall-clock time of the attack.
    """

    scenario: Scenario
    match: Match
    attack_loss: float
    labels_correct: bool | None
    seconds: float

    @property
    def psnr(self) -> float:
        """Mean PSNR in dB over the attacked site's images."""
        return float(self.match.psnr.mean())

    @property
    def ssim(self) -> float:
        """Mean SSIM over the attacked site's images."""
        return float(self.match.ssim.mean())


@dataclass(frozen=True)
class AttackOutcome:
    """Everything the report needs.

    Attributes:
        config: The configuration.
        site: The attacked site's name.
        baseline: Random images (the attack's starting point) scored like a reconstruction.
        results: One result per scenario, in ``scenarios_for(config)`` order.
        update_norm: L2 norm of the attacked site's unprotected update.
        num_parameters: Trainable parameters ``d`` of the victim; DP noise has norm about
            ``sigma * clip_norm * sqrt(d)``.
    """

    config: AttackConfig
    site: str
    baseline: Match
    results: tuple[ScenarioResult, ...]
    update_norm: float
    num_parameters: int


def scenarios_for(config: AttackConfig) -> list[Scenario]:
    """No protection, then DP at each noise level, then secure aggregation when enabled."""
    found = [Scenario("none")]
    found += [Scenario(f"dp-{s:g}", noise_multiplier=s) for s in config.noise_multipliers]
    if config.secagg_sites:
        found.append(Scenario(f"secagg-{config.secagg_sites}", num_sites=config.secagg_sites))
    return found


def run_attack(
    config: AttackConfig, *, on_scenario: Callable[[Scenario], None] | None = None
) -> AttackOutcome:
    """Attacks the first site's update under every scenario of ``config``.

    Args:
        config: What to attack.
        on_scenario: Called with each scenario before its attack (e.g. for progress display).
    """
    batches = synthetic_batches(
        num_sites=max(1, config.secagg_sites),
        batch_size=config.batch_size,
        image_size=config.image_size,
        seed=config.seed,
    )
    model = build_victim(config.model, image_size=config.image_size, seed=config.seed)
    loss_fn = loss_for("classification")
    updates = [model_gradients(model, loss_fn, b.images, b.labels) for b in batches]
    results = []
    for scenario in scenarios_for(config):
        if on_scenario is not None:
            on_scenario(scenario)
        results.append(attack_scenario(model, updates, batches, scenario, config))
    return AttackOutcome(
        config=config,
        site=batches[0].site,
        baseline=_random_baseline(batches[0], config.seed),
        results=tuple(results),
        update_norm=float(global_norm(updates[0])),
        num_parameters=sum(g.numel() for g in updates[0]),
    )


def attack_scenario(
    model: nn.Module,
    updates: Sequence[Gradients],
    batches: Sequence[SiteBatch],
    scenario: Scenario,
    config: AttackConfig,
) -> ScenarioResult:
    """Protects the sites' updates as ``scenario`` says, attacks, and scores site 0's images.

    Args:
        model: The victim, as the sites used it.
        updates: Each site's gradient, site 0 being the attacked site.
        batches: Each site's batch, aligned with ``updates``.
        scenario: The protection level.
        config: The harness configuration.
    """
    observed = observe(updates, scenario, clip_norm=config.clip_norm, seed=config.seed)
    labels, correct = _attack_labels(model, observed, batches, scenario, config.labels)
    channels, height, width = batches[0].images.shape[1:]
    start = time.perf_counter()
    inversion = invert_gradients(
        model,
        observed,
        labels,
        shape=(channels, height, width),
        config=config.inversion,
        seed=derive_seed(config.seed, "attack", scenario.name),
        loss_fn=loss_for("classification"),
    )
    seconds = time.perf_counter() - start
    match = match_reconstructions(inversion.images, batches[0].images)
    return ScenarioResult(scenario, match, inversion.loss, correct, seconds)


def observe(updates: Sequence[Gradients], scenario: Scenario, *, clip_norm: float, seed: int) -> Gradients:
    """What the attacker sees of the first ``scenario.num_sites`` updates under ``scenario``."""
    if scenario.num_sites > len(updates):
        raise ConfigError(f"scenario {scenario.name} needs {scenario.num_sites} updates, got {len(updates)}")
    seen = [list(u) for u in updates[: scenario.num_sites]]
    sigma = scenario.noise_multiplier
    if sigma is not None:
        generator = torch.Generator().manual_seed(derive_seed(seed, "noise", scenario.name))
        seen = [
            gaussian_mechanism(u, clip_norm=clip_norm, noise_multiplier=sigma, generator=generator)
            for u in seen
        ]
    return seen[0] if len(seen) == 1 else secure_sum(seen)


def _attack_labels(
    model: nn.Module,
    observed: Gradients,
    batches: Sequence[SiteBatch],
    scenario: Scenario,
    source: LabelSource,
) -> tuple[torch.Tensor, bool | None]:
    """The labels the attacker uses, and whether iDLG got them right (``None`` if given)."""
    known = torch.cat([b.labels for b in batches[: scenario.num_sites]])
    if source == "known" or scenario.num_sites > 1:
        return known, None
    inferred = infer_label_idlg(last_linear_weight_gradient(model, observed))
    return torch.tensor([inferred]), inferred == int(known[0])


def _random_baseline(batch: SiteBatch, seed: int) -> Match:
    """Gaussian images like the attack's starting point, matched and scored as reconstructions."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "baseline"))
    return match_reconstructions(torch.randn(batch.images.shape, generator=generator), batch.images)


def _require(condition: bool, message: str) -> None:
    """Raises ``ConfigError(message)`` unless ``condition``."""
    if not condition:
        raise ConfigError(message)
