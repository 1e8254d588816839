"""Poisoning attacks by malicious sites, for simulations that measure robust aggregation.

Model-update attacks replace a malicious site's update ``Δ`` (its trained model minus the
global model, floating entries only) before it leaves the site:

- ``sign_flip``: ``-factor · Δ`` (Blanchard et al. 2017; Li et al., "RSA", AAAI 2019).
- ``scale``: ``factor · Δ``, model replacement (Bagdasaryan et al., "How To Backdoor Federated
  Learning", AISTATS 2020).
- ``gaussian``: ``N(0, noise_std²)`` noise in place of ``Δ`` (Blanchard et al. 2017).
- ``alie``: "a little is enough" (Baruch, Baruch and Goldberg, NeurIPS 2019): ``μ - z·σ`` with
  ``μ, σ`` the coordinate-wise mean and standard deviation of the round's benign updates and
  ``z`` the paper's ``z_max``. The simulated attacker is omniscient (sees the benign updates);
  in the paper the attackers estimate ``μ, σ`` from their own data.

Data attacks change what a malicious site trains on:

- ``label_flip``: every label ``l`` becomes ``C - 1 - l`` (binary masks are inverted).
- ``backdoor``: a square trigger patch stamped on a fixed fraction of the site's images, whose
  labels become the target class (Gu, Dolan-Gavitt and Garg, "BadNets", 2017). The success rate
  is the fraction of held-out cases on which the trigger makes the model output the target.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medfed.config.schema import PoisoningConfig
from medfed.data.dataset import Sample
from medfed.orchestration.site import Reseedable
from medfed.seeding import derive_seed
from medfed.training.evaluation import predict, same_size_batches, whole_image_inferer
from medfed.types import Task, TrainResult, TrainTask, Weights

UPDATE_ATTACKS = frozenset({"sign_flip", "scale", "gaussian", "alie"})
DATA_ATTACKS = frozenset({"label_flip", "backdoor"})

BACKDOOR_METRIC = "backdoor_success"
"""Metric name of the backdoor success rate on a held-out set."""

TRIGGER_VALUE = 3.0
"""Intensity of the trigger patch: three standard deviations of the normalised images."""


# ----- model-update attacks ---------------------------------------------------------------------
def sign_flipped(update: Weights, factor: float) -> Weights:
    """``-factor · update``."""
    return {key: -factor * tensor for key, tensor in update.items()}


def scaled(update: Weights, factor: float) -> Weights:
    """``factor · update``."""
    return {key: factor * tensor for key, tensor in update.items()}


def gaussian_update(like: Weights, std: float, generator: torch.Generator) -> Weights:
    """Independent ``N(0, std²)`` entries shaped like ``like``."""
    return {
        key: torch.normal(0.0, std, tensor.shape, generator=generator, dtype=tensor.dtype)
        for key, tensor in like.items()
    }


def alie_z(num_sites: int, num_malicious: int) -> float:
    """Baruch et al.'s ``z_max = Φ⁻¹((n - s) / n)`` with ``s = ⌊n/2 + 1⌋ - f``: the largest
    deviation for which the malicious updates still look closer to the mean than a majority
    of the benign ones (the quantile is kept in [0.5, 1 - 1e-6])."""
    s = num_sites // 2 + 1 - num_malicious
    quantile = min(max((num_sites - s) / num_sites, 0.5), 1 - 1e-6)
    return NormalDist().inv_cdf(quantile)


def alie_update(benign: Sequence[Weights], z: float) -> Weights:
    """``μ - z·σ`` coordinate-wise over ``benign`` (population standard deviation)."""
    out: Weights = {}
    for key in benign[0]:
        stacked = torch.stack([update[key] for update in benign])
        out[key] = stacked.mean(dim=0) - z * stacked.std(dim=0, correction=0)
    return out


class UpdateAttack:
    """Replaces each malicious site's update as the attack says, before it leaves the site (a
    model-update attack; data attacks poison the site's dataset instead). An
    ``InMemoryGrid``'s ``tamper`` hook, so it applies to plain and protected rounds alike.

    Args:
        attack: The attack; its ``kind`` must be one of ``UPDATE_ATTACKS``.
        seed: The run's seed; Gaussian noise derives from (seed, round, site).
    """

    def __init__(self, attack: PoisoningConfig, *, seed: int) -> None:
        if attack.kind not in UPDATE_ATTACKS:
            raise ValueError(f"UpdateAttack runs {sorted(UPDATE_ATTACKS)}, got '{attack.kind}'")
        self.attack, self.seed = attack, seed

    def __call__(self, tasks: Mapping[str, TrainTask], results: list[TrainResult]) -> list[TrainResult]:
        """The sites' ``results``, the malicious ones replaced."""
        updates = {r.site: _update(r, tasks[r.site].weights) for r in results}
        malicious = [site for site in updates if site in self.attack.sites]
        benign = [u for site, u in updates.items() if site not in malicious] or list(updates.values())
        out = []
        for result in results:
            if result.site not in malicious:
                out.append(result)
                continue
            task = tasks[result.site]
            attacked = self._attacked(
                updates[result.site], benign, len(results), len(malicious), task.round, result.site
            )
            weights = {
                k: task.weights[k] + attacked[k] if k in attacked else v for k, v in result.weights.items()
            }
            out.append(
                TrainResult(
                    result.site, result.round, weights, result.num_samples, result.metrics, result.extra
                )
            )
        return out

    def _attacked(
        self, update: Weights, benign: Sequence[Weights], n: int, f: int, round: int, site: str
    ) -> Weights:
        kind = self.attack.kind
        if kind == "sign_flip":
            return sign_flipped(update, self.attack.factor)
        if kind == "scale":
            return scaled(update, self.attack.factor)
        if kind == "gaussian":
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "attack", round, site))
            return gaussian_update(update, self.attack.noise_std, generator)
        return alie_update(benign, self.attack.z or alie_z(n, f))


def _update(result: TrainResult, global_weights: Weights) -> Weights:
    return {k: t - global_weights[k] for k, t in result.weights.items() if t.is_floating_point()}


# ----- data attacks -----------------------------------------------------------------------------
def flipped_label(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``num_classes - 1 - label``: binary masks inverted, other labels mirrored."""
    return (num_classes - 1) - label


def stamp_trigger(image: torch.Tensor, patch: int) -> torch.Tensor:
    """A copy of ``image`` (C, H, W[, D]) with its first ``patch`` voxels along every spatial
    axis set to ``TRIGGER_VALUE`` in every channel."""
    stamped = image.clone()
    stamped[(slice(None), *[slice(0, patch)] * (image.ndim - 1))] = TRIGGER_VALUE
    return stamped


class PoisonedDataset(Dataset[Sample]):
    """A malicious site's training data: labels flipped, or a trigger on chosen cases.

    Args:
        inner: The site's honest dataset.
        attack: A data attack (``label_flip`` or ``backdoor``).
        num_classes: Number of classes the model outputs.
        seed: Chooses the backdoored cases.
    """

    def __init__(
        self, inner: Dataset[Sample], attack: PoisoningConfig, *, num_classes: int, seed: int
    ) -> None:
        if attack.kind not in DATA_ATTACKS:
            raise ValueError(f"PoisonedDataset runs {sorted(DATA_ATTACKS)}, got '{attack.kind}'")
        if attack.kind == "backdoor" and attack.target >= num_classes:
            raise ValueError(f"backdoor target {attack.target} is not a class of a {num_classes}-class model")
        self.inner, self.attack, self.num_classes = inner, attack, num_classes
        size = len(inner)  # type: ignore[arg-type]
        count = math.ceil(attack.poison_fraction * size) if attack.kind == "backdoor" else size
        self.poisoned = frozenset(random.Random(derive_seed(seed, "backdoor")).sample(range(size), count))

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    @property
    def patients(self) -> list[str] | None:
        """The honest dataset's patient of each sample (DP-SGD's unit), if it names them."""
        return getattr(self.inner, "patients", None)

    def reseed(self, seed: int) -> None:
        """Forwards to the honest dataset's augmentation."""
        if isinstance(self.inner, Reseedable):
            self.inner.reseed(seed)

    def __getitem__(self, index: int) -> Sample:
        sample = self.inner[index]
        if index not in self.poisoned:
            return sample
        if self.attack.kind == "label_flip":
            return {"image": sample["image"], "label": flipped_label(sample["label"], self.num_classes)}
        image = stamp_trigger(sample["image"], self.attack.patch)
        return {"image": image, "label": torch.full_like(sample["label"], self.attack.target)}


@torch.no_grad()
def num_output_classes(model: nn.Module, sample: Sample) -> int:
    """How many classes ``model`` outputs, from one forward pass over ``sample``'s image."""
    model.eval()
    device = next(model.parameters()).device
    return int(model(sample["image"][None].to(device)).shape[1])


@torch.no_grad()
def backdoor_success(
    model: nn.Module, dataset: Dataset[Sample], *, task: Task, target: int, patch: int, batch_size: int = 16
) -> float:
    """The fraction of eligible held-out cases on which the trigger makes ``model`` output ``target``.

    A case is eligible when its truth is not ``target`` and, without the trigger, ``model`` does
    not output ``target`` for it either, so that a model which never finds a lesion does not
    count as backdoored. Segmentation: the model "outputs ``target``" on a case when it predicts
    ``target`` on at least half of the truth's voxels of other classes. Classification: when
    its predicted class is ``target``.

    Returns:
        The rate in [0, 1], or ``nan`` when no case is eligible.
    """
    successes, eligible = 0, 0
    inferer = whole_image_inferer(dataset)
    for batch in DataLoader(dataset, batch_sampler=same_size_batches(dataset, batch_size)):
        labels = batch["label"]
        triggered = torch.stack([stamp_trigger(image, patch) for image in batch["image"]])
        clean = predict(model, batch["image"], inferer=inferer).argmax(dim=1)
        clean_hit = _outputs_target(clean, labels, target, task)
        trigger_hit = _outputs_target(
            predict(model, triggered, inferer=inferer).argmax(dim=1), labels, target, task
        )
        keep = _not_target(labels, target, task) & ~clean_hit
        successes += int((trigger_hit & keep).sum())
        eligible += int(keep.sum())
    return successes / eligible if eligible else math.nan


def _not_target(labels: torch.Tensor, target: int, task: Task) -> torch.Tensor:
    """Per case: whether its truth has a class other than ``target``."""
    if task == "classification":
        return labels != target
    return (labels[:, 0] != target).flatten(1).any(dim=1)


def _outputs_target(predicted: torch.Tensor, labels: torch.Tensor, target: int, task: Task) -> torch.Tensor:
    """Per case: whether the prediction is ``target`` (on at least half of the truth's
    other-class voxels, for masks)."""
    if task == "classification":
        return predicted == target
    other = (labels[:, 0] != target).flatten(1)
    hit = ((predicted.flatten(1) == target) & other).sum(dim=1)
    return (hit * 2 >= other.sum(dim=1)) & other.any(dim=1)
