"""The defences the harness measures, modelled in their simplest correct form.

These are the attacker's *view* of a protected update, not medfed's production privacy code
(``medfed.privacy``): the harness must not depend on the code it evaluates.

* Differential privacy, Gaussian mechanism on a site's update as in DP-FedAvg (McMahan et al.
  2018, "Learning Differentially Private Recurrent Language Models", ICLR; Abadi et al. 2016,
  "Deep Learning with Differential Privacy", CCS): clip the whole update to L2 norm ``C``, then
  add ``N(0, sigma^2 C^2)`` to every coordinate. The attacker sees the noised update (local DP).
* Secure aggregation (Bonawitz et al. 2017, "Practical Secure Aggregation for Privacy-Preserving
  Machine Learning", CCS): the server learns only the **sum** of the sites' updates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Gradients = list[torch.Tensor]


def global_norm(update: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all tensors of ``update`` seen as one flat vector (0-dim tensor)."""
    return torch.stack([t.detach().pow(2).sum() for t in update]).sum().sqrt()


def clip_by_norm(update: Sequence[torch.Tensor], max_norm: float) -> Gradients:
    """Scales ``update`` by ``min(1, max_norm / ||update||)``.

    Raises:
        ValueError: If ``max_norm <= 0``.
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    scale = torch.clamp(max_norm / global_norm(update).clamp_min(1e-12), max=1.0)
    return [t.detach() * scale for t in update]


def gaussian_mechanism(
    update: Sequence[torch.Tensor],
    *,
    clip_norm: float,
    noise_multiplier: float,
    generator: torch.Generator,
) -> Gradients:
    """Clips ``update`` to ``clip_norm`` and adds ``N(0, (noise_multiplier * clip_norm)^2)``.

    Args:
        update: The site's update, one tensor per parameter.
        clip_norm: The L2 bound ``C``.
        noise_multiplier: ``sigma``; 0 means clipping only.
        generator: Source of the noise.

    Raises:
        ValueError: If ``clip_norm <= 0`` or ``noise_multiplier < 0``.
    """
    if noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
    std = noise_multiplier * clip_norm
    return [
        t + std * torch.randn(t.shape, generator=generator, dtype=t.dtype)
        for t in clip_by_norm(update, clip_norm)
    ]


def secure_sum(updates: Sequence[Sequence[torch.Tensor]]) -> Gradients:
    """What secure aggregation reveals: the element-wise sum of the sites' updates.

    Raises:
        ValueError: If ``updates`` is empty or the updates have different structures.
    """
    if not updates:
        raise ValueError("secure_sum needs at least one update")
    if len({len(u) for u in updates}) != 1:
        raise ValueError("all updates must have the same number of tensors")
    return [torch.stack([u[i].detach() for u in updates]).sum(0) for i in range(len(updates[0]))]
