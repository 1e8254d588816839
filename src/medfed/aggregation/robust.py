"""Byzantine-robust aggregation of model updates: pure functions over lists of ``Weights``.

Every function treats an update as one vector (its tensors flattened in key order), computes
in float64 and returns tensors with the first update's keys, shapes and dtypes (integer
tensors rounded). None modifies its inputs. The inputs should be *updates* (deltas from the
global model) so that the result composes with server optimisers (FedAdam's pseudo-gradient);
for the coordinate-wise rules and Krum, deltas and full weights give the same answer.

- Coordinate-wise median and trimmed mean: Yin, Chen, Ramchandran and Bartlett, "Byzantine-Robust
  Distributed Learning: Towards Optimal Statistical Rates", ICML 2018.
- Krum and Multi-Krum: Blanchard, El Mhamdi, Guerraoui and Stainer, "Machine Learning with
  Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017.
- Geometric median by smoothed Weiszfeld (RFA): Pillutla, Kakade and Harchaoui, "Robust
  Aggregation for Federated Learning", IEEE Transactions on Signal Processing 2022.
- Norm bounding: Sun, Kairouz, Suresh and McMahan, "Can You Really Backdoor Federated
  Learning?", 2019.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medfed.aggregation.keys import check_compatible
from medfed.types import Weights


def stack_updates(updates: Sequence[Weights]) -> torch.Tensor:
    """The updates as the rows of one float64 matrix ``(n, d)``, keys in the first update's order.

    Raises:
        ValueError: If ``updates`` is empty or an update's keys, shapes or dtypes differ from
            the first one's.
    """
    if not updates:
        raise ValueError("robust aggregation needs at least one update, got none")
    first = updates[0]
    for index, update in enumerate(updates[1:], start=1):
        check_compatible(first, update, f"update {index}")
    rows = [torch.cat([update[key].detach().reshape(-1).double() for key in first]) for update in updates]
    return torch.stack(rows) if first else torch.zeros(len(updates), 0, dtype=torch.float64)


def unstack(vector: torch.Tensor, like: Weights) -> Weights:
    """Splits a flat float64 ``vector`` into tensors shaped and typed like ``like``."""
    out: Weights = {}
    offset = 0
    for key, tensor in like.items():
        piece = vector[offset : offset + tensor.numel()].reshape(tensor.shape)
        out[key] = piece.to(tensor.dtype) if tensor.is_floating_point() else piece.round().to(tensor.dtype)
        offset += tensor.numel()
    return out


def coordinate_median(updates: Sequence[Weights]) -> Weights:
    """The coordinate-wise median (the mean of the two middle values for an even count)."""
    matrix = stack_updates(updates)
    return unstack(_median_rows(matrix), updates[0])


def trimmed_mean(updates: Sequence[Weights], beta: float) -> Weights:
    """The coordinate-wise mean after dropping the ``floor(beta * n)`` smallest and largest values.

    Args:
        updates: The updates.
        beta: Fraction trimmed at each end, in [0, 0.5).

    Raises:
        ValueError: If ``beta`` lies outside [0, 0.5).
    """
    if not 0.0 <= beta < 0.5:
        raise ValueError(f"beta must lie in [0, 0.5), got {beta}")
    matrix = stack_updates(updates)
    cut = int(beta * matrix.shape[0])
    kept = matrix.sort(dim=0).values[cut : matrix.shape[0] - cut]
    return unstack(kept.mean(dim=0), updates[0])


def krum_scores(matrix: torch.Tensor, f: int) -> torch.Tensor:
    """Each row's Krum score: the sum of its squared distances to its ``n - f - 2`` nearest other
    rows (at least 1, as in Flower, so that a round with few answers still has a score)."""
    n = matrix.shape[0]
    exact = "donot_use_mm_for_euclid_dist"  # the matrix-product shortcut loses precision
    distances = torch.cdist(matrix, matrix, compute_mode=exact).square()
    closest = max(1, n - f - 2)
    return distances.sort(dim=1).values[:, 1 : closest + 1].sum(dim=1)


def multi_krum(
    updates: Sequence[Weights], *, f: int, m: int = 1, weights: Sequence[float] | None = None
) -> Weights:
    """Multi-Krum: the mean of the ``m`` updates with the lowest Krum scores (``m = 1``: Krum).

    Args:
        updates: The updates.
        f: Number of Byzantine updates tolerated (>= 0).
        m: Number of updates averaged (1 to n).
        weights: Weights of the selected updates' mean (default: equal). Robust aggregation
            leaves them equal, since sites report their own sample counts; Flower weights them
            by sample count.

    Raises:
        ValueError: If ``f`` or ``m`` is out of range or ``weights`` has the wrong length.
    """
    matrix = stack_updates(updates)
    n = matrix.shape[0]
    if f < 0 or not 1 <= m <= n:
        raise ValueError(f"Krum needs f >= 0 and 1 <= m <= {n} (the number of updates), got f={f}, m={m}")
    scale = _checked_weights(weights, n)
    chosen = torch.argsort(krum_scores(matrix, f), stable=True)[:m]
    mean = (matrix[chosen] * scale[chosen, None]).sum(dim=0) / scale[chosen].sum()
    return unstack(mean, updates[0])


def geometric_median(
    updates: Sequence[Weights],
    *,
    weights: Sequence[float] | None = None,
    nu: float = 1e-6,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> Weights:
    """The (weighted) geometric median by the smoothed Weiszfeld algorithm (RFA, Algorithm 3).

    Starting from the coordinate-wise median (RFA starts from the mean, which one huge outlier
    drags arbitrarily far: the relative stopping rule would then stop far from the honest
    updates), each iteration re-weights update ``i`` by
    ``alpha_i / max(nu, ||v - x_i||)``; it stops after ``max_iter`` iterations or when the
    objective ``sum_i alpha_i ||v - x_i||`` improves by less than ``tol`` times its value.

    Args:
        updates: The updates.
        weights: Non-negative weights ``alpha_i`` (default: equal).
        nu: Smoothing (> 0): distances below it count as ``nu``.
        max_iter: Most Weiszfeld iterations (>= 1).
        tol: Relative improvement of the objective below which iteration stops (>= 0).

    Raises:
        ValueError: If an argument is out of range.
    """
    if nu <= 0 or max_iter < 1 or tol < 0:
        raise ValueError(f"need nu > 0, max_iter >= 1 and tol >= 0, got {nu}, {max_iter}, {tol}")
    matrix = stack_updates(updates)
    alpha = _checked_weights(weights, matrix.shape[0])
    median = _median_rows(matrix)
    objective = _weiszfeld_objective(matrix, alpha, median)
    for _ in range(max_iter):
        beta = alpha / torch.linalg.vector_norm(matrix - median, dim=1).clamp_min(nu)
        median = (beta[:, None] * matrix).sum(dim=0) / beta.sum()
        previous, objective = objective, _weiszfeld_objective(matrix, alpha, median)
        if previous - objective <= tol * objective:
            break
    return unstack(median, updates[0])


def norm_bounded(updates: Sequence[Weights], bound: float | None = None) -> list[Weights]:
    """Each update scaled by ``min(1, bound / norm)``.

    Args:
        updates: The updates.
        bound: The largest norm kept (> 0); ``None`` uses the median of the updates' norms,
            which a minority of updates cannot move far.

    Raises:
        ValueError: If ``bound`` is not a finite number > 0.
    """
    matrix = stack_updates(updates)
    norms = torch.linalg.vector_norm(matrix, dim=1)
    if bound is None:
        bound = float(_median_rows(norms[:, None]).squeeze())
    elif not (torch.isfinite(torch.tensor(bound)) and bound > 0):
        raise ValueError(f"bound must be a finite number > 0, got {bound}")
    scale = torch.where(norms > bound, bound / norms, torch.ones_like(norms))
    return [unstack(row, updates[0]) for row in matrix * scale[:, None]]


def _median_rows(matrix: torch.Tensor) -> torch.Tensor:
    """The median over dim 0 of ``matrix`` ``(n, d)``, averaging the middle pair for even n."""
    ordered = matrix.sort(dim=0).values
    n = matrix.shape[0]
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def _checked_weights(weights: Sequence[float] | None, n: int) -> torch.Tensor:
    if weights is None:
        return torch.ones(n, dtype=torch.float64)
    scale = torch.tensor([float(w) for w in weights], dtype=torch.float64)
    if scale.shape != (n,) or not torch.isfinite(scale).all() or (scale < 0).any() or scale.sum() <= 0:
        raise ValueError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return scale


def _weiszfeld_objective(matrix: torch.Tensor, alpha: torch.Tensor, point: torch.Tensor) -> float:
    return float((alpha * torch.linalg.vector_norm(matrix - point, dim=1)).sum())
