"""Scientific preconditions of a simulation, checked before its run directory exists: each
failure is one ``ConfigError`` line naming the settings to change.

SCAFFOLD has no precondition on the optimiser: its control variate is the mean local gradient,
valid under SGD, momentum and Adam alike.
"""

from __future__ import annotations

from torch import nn

from medfed.config.schema import ModelConfig, PrivacyConfig, SimulationConfig, TrainingConfig
from medfed.errors import ConfigError
from medfed.models import MODELS, NetworkSpec, build_model, network_spec
from medfed.models.norms import has_batch_norm, norm_layer_keys
from medfed.privacy.setup import prepare_model
from medfed.strategies.fedbn import FedBN


def check_config(config: SimulationConfig) -> None:
    """Task against model, the preprocessing against the network's strides (images are padded
    to a multiple of them, ``PreprocessingConfig.settings``), FedBN against a model without
    normalisation entries, and a batch of one against BatchNorm.

    Raises:
        ConfigError: The first precondition that fails.
    """
    spec = network_spec(config.model.name, config.model.params)
    check_task(config.task, config.model.name, spec)
    config.preprocessing.settings(config.model)
    if any(strategy.name == FedBN.name for strategy in config.strategies):
        check_local_norm_layers(config)
    check_batch_of_one(config.model, config.training, config.privacy)


def check_task(task: str, model: str, spec: NetworkSpec) -> None:
    """Raises ``ConfigError`` unless ``model`` is a network for ``task``."""
    if spec.task != task:
        fitting = [name for name in MODELS.names() if MODELS.create(name).task == task]
        raise ConfigError(
            f"model '{model}' is a {spec.task} network but task is '{task}'; use model.name one of {fitting}"
        )


def trained_model(
    model: ModelConfig, privacy: PrivacyConfig, *, seed: int, image_dims: int | None = None
) -> nn.Module:
    """``model`` as the sites train it (DP-compatible layers under DP-SGD), for images of
    ``image_dims`` (``None``: the network's own default)."""
    dims = {} if image_dims is None else {"spatial_dims": model.network_dims(image_dims)}
    return prepare_model(privacy.plan(), build_model(model.name, {**dims, **model.params}, seed=seed))


def check_local_norm_layers(config: SimulationConfig) -> None:
    """Raises ``ConfigError`` when FedBN would be FedAvg: the model, as trained, has no
    normalisation layer with parameters or running statistics (``norm_layer_keys``) for the
    sites to keep."""
    synthetic = config.data.synthetic
    dims = None if synthetic is None else synthetic.dims
    if not norm_layer_keys(trained_model(config.model, config.privacy, seed=config.seed, image_dims=dims)):
        raise ConfigError(
            f"strategy 'fedbn' keeps each site's normalisation layers, but model '{config.model.name}' "
            "has none with parameters or running statistics, so FedBN would be FedAvg; "
            "use model.params.norm: batch (U-Net) or an affine norm layer"
        )


def check_batch_of_one(model: ModelConfig, training: TrainingConfig, privacy: PrivacyConfig) -> None:
    """Raises ``ConfigError`` when ``training.batch_size`` is 1 and ``model``, as trained, has
    BatchNorm layers: they cannot normalise a batch of one, so every batch would fail."""
    if training.batch_size == 1 and has_batch_norm(trained_model(model, privacy, seed=0)):
        raise ConfigError(
            f"training.batch_size 1 with model '{model.name}', which has BatchNorm layers: "
            "they need at least two cases per batch; use training.batch_size >= 2 or a model "
            "without BatchNorm (model.params.norm: instance for the U-Net)"
        )
