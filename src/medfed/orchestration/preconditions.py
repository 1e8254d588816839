"""Scientific preconditions of a simulation, checked before its run directory exists: each
failure is one ``ConfigError`` line naming the settings to change.

SCAFFOLD has no precondition on the optimiser: its control variate is the mean local gradient,
valid under SGD, momentum and Adam alike.
"""

from __future__ import annotations

from medfed.config.schema import SimulationConfig
from medfed.errors import ConfigError
from medfed.models import MODELS, NetworkSpec, build_model, network_spec
from medfed.models.norms import norm_layer_keys
from medfed.privacy.setup import prepare_model
from medfed.strategies.fedbn import FedBN


def check_config(config: SimulationConfig) -> None:
    """Task against model, the preprocessing against the network's strides (images are padded
    to a multiple of them, ``PreprocessingConfig.settings``), and FedBN against a model without
    normalisation entries.

    Raises:
        ConfigError: The first precondition that fails.
    """
    spec = network_spec(config.model.name, config.model.params)
    check_task(config.task, config.model.name, spec)
    config.preprocessing.settings(config.model)
    if any(strategy.name == FedBN.name for strategy in config.strategies):
        check_local_norm_layers(config)


def check_task(task: str, model: str, spec: NetworkSpec) -> None:
    """Raises ``ConfigError`` unless ``model`` is a network for ``task``."""
    if spec.task != task:
        fitting = [name for name in MODELS.names() if MODELS.create(name).task == task]
        raise ConfigError(
            f"model '{model}' is a {spec.task} network but task is '{task}'; use model.name one of {fitting}"
        )


def check_local_norm_layers(config: SimulationConfig) -> None:
    """Raises ``ConfigError`` when FedBN would be FedAvg: the model, as trained (DP-compatible
    under DP-SGD), has no normalisation layer with parameters or running statistics
    (``norm_layer_keys``) for the sites to keep."""
    synthetic = config.data.synthetic
    dims = {} if synthetic is None else {"spatial_dims": config.model.network_dims(synthetic.dims)}
    model = build_model(config.model.name, {**dims, **config.model.params}, seed=config.seed)
    if not norm_layer_keys(prepare_model(config.privacy.plan(), model)):
        raise ConfigError(
            f"strategy 'fedbn' keeps each site's normalisation layers, but model '{config.model.name}' "
            "has none with parameters or running statistics, so FedBN would be FedAvg; "
            "use model.params.norm: batch (U-Net) or an affine norm layer"
        )
