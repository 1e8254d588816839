"""Gradient inversion: reconstructing training images from a shared gradient.

Implements the attack of Geiping et al. 2020, "Inverting Gradients -- How easy is it to break
privacy in federated learning?" (NeurIPS): dummy images are optimised so that the gradient they
produce has the highest **cosine similarity** with the observed gradient, plus a total-variation
image prior, with Adam on the **sign** of the gradient and a step decay of the learning rate.
Several random restarts may be run; the one with the lowest attack loss is kept (the attacker
never sees the true images).

Labels are assumed known to the attacker or inferred beforehand (see ``infer_label_idlg``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from medfed.errors import ConfigError

Gradients = list[torch.Tensor]
"""One tensor per trainable parameter, in ``model.parameters()`` order."""


@dataclass(frozen=True)
class InversionConfig:
    """Hyperparameters of the attack (defaults follow Geiping et al. 2020, scaled down).

    Attributes:
        iterations: Optimisation steps per restart.
        learning_rate: Adam's initial step size (on signed gradients, so in image units).
        tv_weight: Weight of the total-variation prior.
        restarts: Independent random initialisations; the lowest-loss one is kept.

    Raises:
        ConfigError: If a value is out of range.
    """

    iterations: int = 500
    learning_rate: float = 0.1
    tv_weight: float = 0.1
    restarts: int = 1

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.tv_weight < 0:
            raise ConfigError(f"tv_weight must be >= 0, got {self.tv_weight}")
        if self.restarts < 1:
            raise ConfigError(f"restarts must be >= 1, got {self.restarts}")


@dataclass(frozen=True)
class Inversion:
    """The outcome of one attack.

    Attributes:
        images: float32 ``(B, C, H, W)`` reconstructions, in the model's input units.
        loss: Final attack loss (1 - cosine similarity + TV term) of the kept restart.
    """

    images: torch.Tensor
    loss: float


def model_gradients(
    model: nn.Module,
    loss_fn: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    create_graph: bool = False,
) -> Gradients:
    """The gradient of ``loss_fn(model(images), labels)`` w.r.t. the trainable parameters.

    Args:
        model: The classifier; input ``(B, C, H, W)``, output ``(B, K)`` logits.
        loss_fn: A loss averaged over the batch, e.g. ``nn.CrossEntropyLoss()``.
        images: float32 ``(B, C, H, W)``.
        labels: int64 ``(B,)`` classes.
        create_graph: Keep the graph so that the gradient can itself be differentiated.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model(images), labels)
    return list(torch.autograd.grad(loss, params, create_graph=create_graph))


def cosine_distance(candidate: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    """``1 - cos(candidate, target)`` of the two gradients seen as single flat vectors.

    Returns:
        A 0-dim tensor in ``[0, 2]``; 0 means the gradients point the same way.
    """
    dot = sum((c * t).sum() for c, t in zip(candidate, target, strict=True))
    norm_c = torch.stack([c.pow(2).sum() for c in candidate]).sum().sqrt()
    norm_t = torch.stack([t.pow(2).sum() for t in target]).sum().sqrt()
    return 1 - dot / (norm_c * norm_t).clamp_min(1e-12)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference of neighbouring pixels.

    Args:
        images: ``(B, C, H, W)``.

    Returns:
        A 0-dim tensor.
    """
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean()
    return dx + dy


def invert_gradients(
    model: nn.Module,
    target: Gradients,
    labels: torch.Tensor,
    *,
    shape: tuple[int, int, int],
    config: InversionConfig,
    seed: int,
    loss_fn: nn.Module | None = None,
) -> Inversion:
    """Reconstructs a batch of images whose gradient matches ``target`` (Geiping et al. 2020).

    Args:
        model: The model the gradient was computed on, in the same mode.
        target: The observed gradient (possibly clipped, noised or summed).
        labels: int64 ``(B,)`` labels of the images to reconstruct; ``B`` sets the batch size.
        shape: ``(C, H, W)`` of one image.
        config: Attack hyperparameters.
        seed: Seed of the random initialisations.
        loss_fn: The training loss; cross-entropy when ``None``.

    Returns:
        The reconstruction of the restart with the lowest final attack loss.
    """
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    target = [t.detach() for t in target]
    generator = torch.Generator().manual_seed(seed)
    starts = [torch.randn((len(labels), *shape), generator=generator) for _ in range(config.restarts)]
    results = [_optimise(model, loss_fn, target, labels, start, config) for start in starts]
    return min(results, key=lambda result: result.loss)


def _optimise(
    model: nn.Module,
    loss_fn: nn.Module,
    target: Gradients,
    labels: torch.Tensor,
    start: torch.Tensor,
    config: InversionConfig,
) -> Inversion:
    """One restart: Adam on signed gradients, learning rate x0.1 at 3/8, 5/8 and 7/8 of the run."""
    dummy = start.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([dummy], lr=config.learning_rate)
    n = config.iterations
    milestones = sorted({int(n * 3 / 8), int(n * 5 / 8), int(n * 7 / 8)} - {0})
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=0.1)
    for _ in range(n):
        loss = _attack_loss(model, loss_fn, target, labels, dummy, config.tv_weight)
        (dummy.grad,) = torch.autograd.grad(loss, [dummy])
        dummy.grad.sign_()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        final = _attack_loss(model, loss_fn, target, labels, dummy, config.tv_weight, graph=False)
    return Inversion(images=dummy.detach().clone(), loss=float(final))


def _attack_loss(
    model: nn.Module,
    loss_fn: nn.Module,
    target: Gradients,
    labels: torch.Tensor,
    dummy: torch.Tensor,
    tv_weight: float,
    *,
    graph: bool = True,
) -> torch.Tensor:
    """``1 - cos(grad(dummy), target) + tv_weight * TV(dummy)``."""
    with torch.enable_grad():
        candidate = model_gradients(model, loss_fn, dummy, labels, create_graph=graph)
    return cosine_distance(candidate, target) + tv_weight * total_variation(dummy)
