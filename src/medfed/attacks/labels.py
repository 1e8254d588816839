"""Label inference from a single image's gradient.

iDLG (Zhao et al. 2020, "iDLG: Improved Deep Leakage from Gradients", arXiv:2001.02610): with
softmax cross-entropy, the gradient of the last linear layer's weight row ``k`` is
``(p_k - y_k) * h`` with features ``h >= 0`` (after a ReLU), so only the true class's row has a
negative sum. Valid for a gradient computed on **one** image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def last_linear_weight_gradient(model: nn.Module, gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """The entry of ``gradients`` that belongs to the weight of ``model``'s last ``nn.Linear``.

    Args:
        model: The model; ``gradients`` follows its trainable parameters' order.
        gradients: One tensor per trainable parameter.

    Raises:
        ValueError: If ``model`` has no ``nn.Linear`` layer or the gradient count differs.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if len(params) != len(gradients):
        raise ValueError(f"expected {len(params)} gradient tensors, got {len(gradients)}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("iDLG needs a model whose last layer is nn.Linear")
    weight = linears[-1].weight
    index = next(i for i, p in enumerate(params) if p is weight)
    return gradients[index]


def infer_label_idlg(last_weight_gradient: torch.Tensor) -> int:
    """The class whose row of the last layer's weight gradient has the lowest sum (iDLG).

    Args:
        last_weight_gradient: ``(K, F)`` gradient of the last linear layer's weight.

    Returns:
        The inferred class in ``0..K-1``.
    """
    return int(last_weight_gradient.sum(dim=1).argmin())
