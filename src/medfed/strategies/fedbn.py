"""FedBN: normalisation layers stay local; everything else is averaged as in FedAvg.

Li, Jiang, Zhang, Kamp and Dou, "FedBN: Federated Learning on Non-IID Features via Local Batch
Normalization", ICLR 2021.
"""

from __future__ import annotations

import warnings

from torch import nn

from medfed.aggregation import check_compatible
from medfed.models.norms import norm_layer_keys
from medfed.strategies.base import LocalHooks
from medfed.strategies.fedavg import FedAvg
from medfed.types import SiteState, TrainTask, Weights

NORM = "norm"
"""``SiteState.extra`` group holding a site's own normalisation entries."""


class FedBN(FedAvg):
    """FedBN (Li et al. 2021), for every kind of normalisation layer.

    A site trains and evaluates with its own entries of every normalisation layer (BatchNorm,
    InstanceNorm, GroupNorm, LayerNorm: affine weight and bias, running statistics), found by
    module type (``norm_layer_keys``) and kept in ``SiteState.extra["norm"]``; it takes them
    from the global model only before its first round. The server averages every entry by
    samples, as FedAvg: the other entries are the federated model, and the global norm entries
    are the sample-weighted mean of the sites' own, which no site trains with but which score
    a site that never trained (the unseen site). A model whose norm layers hold no entry makes
    FedBN FedAvg; ``local_hooks`` warns then (``check_norm_layers``).
    """

    name = "fedbn"

    def local_hooks(self, task: TrainTask, site: SiteState, model: nn.Module) -> LocalHooks:
        """No change to training; the hooks carry ``model``'s norm-layer keys to ``finish``."""
        return NormLayers(check_norm_layers(model))

    def finish(
        self, task: TrainTask, site: SiteState, trained: Weights, hooks: LocalHooks
    ) -> tuple[dict[str, Weights], SiteState]:
        """Keeps the site's trained norm entries in its state; sends nothing extra.

        Raises:
            ValueError: If ``hooks`` are not this strategy's or ``trained`` lacks a norm key.
        """
        if not isinstance(hooks, NormLayers):
            raise ValueError(f"fedbn: finish needs the hooks of local_hooks, got {type(hooks).__name__}")
        missing = hooks.keys - trained.keys()
        if missing:
            raise ValueError(f"fedbn: the trained weights lack norm entry '{min(missing)}'")
        norm = {key: trained[key] for key in sorted(hooks.keys)}
        return {}, SiteState(weights=trained, extra={**site.extra, NORM: norm})

    def site_model(self, global_weights: Weights, site: SiteState) -> Weights:
        """The global model with the site's own norm entries (none before its first round).

        Raises:
            ValueError: If the site's norm entries do not line up with the global model's.
        """
        own = site.extra.get(NORM)
        if own is None:
            return global_weights
        unknown = own.keys() - global_weights.keys()
        if unknown:
            raise ValueError(f"site norm layers: key '{min(unknown)}' is not in the global model")
        check_compatible({key: global_weights[key] for key in own}, own, "site norm layers")
        return {**global_weights, **own}


class NormLayers(LocalHooks):
    """Hooks that change nothing and name the model's norm-layer keys (``norm_layer_keys``).

    Args:
        keys: The state-dict keys of the model's normalisation layers.
    """

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys


def check_norm_layers(model: nn.Module) -> frozenset[str]:
    """``norm_layer_keys(model)``, with a ``UserWarning`` when there are none: FedBN would
    then be FedAvg (MONAI's default U-Net: InstanceNorm without affine)."""
    keys = norm_layer_keys(model)
    if not keys:
        warnings.warn(
            "fedbn: the model has no normalisation layer with parameters or running statistics "
            "(e.g. only InstanceNorm without affine), so FedBN is FedAvg for it; use norm: batch, "
            "or an affine norm layer",
            UserWarning,
            stacklevel=2,
        )
    return keys
