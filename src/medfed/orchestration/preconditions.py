"""Scientific preconditions of a simulation, checked before its run directory exists: each
failure is one ``ConfigError`` line naming the settings to change.

SCAFFOLD has no precondition on the optimiser: its control variate is the mean local gradient,
valid under SGD, momentum and Adam alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from medfed.config.schema import SimulationConfig
from medfed.errors import ConfigError
from medfed.models import MODELS, NetworkSpec, build_model, network_spec
from medfed.models.norms import norm_layer_keys
from medfed.orchestration.federation_data import FederationData
from medfed.privacy.setup import prepare_model
from medfed.strategies.fedbn import FedBN


def check_config(config: SimulationConfig) -> None:
    """Task against model, the synthetic image size against the network's strides, and FedBN
    against a model without normalisation entries.

    Raises:
        ConfigError: The first precondition that fails.
    """
    spec = network_spec(config.model.name, config.model.params)
    check_task(config.task, config.model.name, spec)
    if config.data.synthetic is not None:
        size = config.data.synthetic.image_size
        check_image_shape([size] * config.data.synthetic.dims, spec, "data.synthetic.image_size")
    if any(strategy.name == FedBN.name for strategy in config.strategies):
        check_local_norm_layers(config)


def check_data(config: SimulationConfig, data: FederationData) -> None:
    """Every loaded image's spatial size against the network's strides.

    Raises:
        ConfigError: An image whose size the network cannot take, naming its site and case.
    """
    spec = network_spec(config.model.name, config.model.params)
    for site in [*data.train.values(), *data.evaluation_sets.values()]:
        for case in site.cases:
            check_image_shape(case.image.shape[1:], spec, f"site '{site.name}' case '{case.case_id}'")


def check_task(task: str, model: str, spec: NetworkSpec) -> None:
    """Raises ``ConfigError`` unless ``model`` is a network for ``task``."""
    if spec.task != task:
        fitting = [name for name in MODELS.names() if MODELS.create(name).task == task]
        raise ConfigError(
            f"model '{model}' is a {spec.task} network but task is '{task}'; use model.name one of {fitting}"
        )


def check_image_shape(shape: Sequence[int], spec: NetworkSpec, where: str) -> None:
    """Raises ``ConfigError`` unless every size in ``shape`` is a multiple of the network's
    ``size_multiple`` (a U-Net halves the image once per stride and must undo it exactly)."""
    multiple = spec.size_multiple
    if any(size % multiple for size in shape):
        raise ConfigError(
            f"{where}: image size {list(shape)} is not a multiple of {multiple}, the product of "
            f"model.params.strides {spec.args.get('strides')}; change one or the other"
        )


def check_local_norm_layers(config: SimulationConfig) -> None:
    """Raises ``ConfigError`` when FedBN would be FedAvg: the model, as trained (DP-compatible
    under DP-SGD), has no normalisation layer with parameters or running statistics
    (``norm_layer_keys``) for the sites to keep."""
    dims = {} if config.data.synthetic is None else {"spatial_dims": config.data.synthetic.dims}
    model = build_model(config.model.name, {**dims, **config.model.params}, seed=config.seed)
    if not norm_layer_keys(prepare_model(config.privacy.plan(), model)):
        raise ConfigError(
            f"strategy 'fedbn' keeps each site's normalisation layers, but model '{config.model.name}' "
            "has none with parameters or running statistics, so FedBN would be FedAvg; "
            "use model.params.norm: batch (U-Net) or an affine norm layer"
        )
