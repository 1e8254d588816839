"""A simulation's trained model as a plain state dict, TorchScript or a MONAI bundle.

The weights come from a round checkpoint (``checkpoints/<experiment>/round_NNNN.safetensors``);
the network from the registry name and parameters the checkpoint records. Keys are the MONAI
network's own, so ``network.load_state_dict(weights, strict=True)`` accepts them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from safetensors.torch import save as save_bytes
from torch import nn

from medfed.config.schema import ModelConfig, PreprocessingConfig, PrivacyConfig, StrategyConfig
from medfed.data.preprocessing import DEFAULT_PREPROCESSING, SLICE_AXES, Preprocessing
from medfed.deployment.job import load_job
from medfed.deployment.report import JOB_FILE
from medfed.errors import CheckpointError, ConfigError
from medfed.export import ExportFormat
from medfed.files import atomic_write
from medfed.models import NetworkSpec, build_model, network_spec
from medfed.models.standardization import folded_weights
from medfed.orchestration.checkpoint import (
    Checkpoint,
    load_checkpoint,
    read_model_metadata,
    round_checkpoints,
    storable,
)
from medfed.orchestration.run_dir import resume_run, seed_dir
from medfed.privacy.setup import prepare_model
from medfed.strategies.registry import STRATEGIES
from medfed.types import Task, Weights


@dataclass(frozen=True)
class TrainedModel:
    """A checkpointed model and what is needed to rebuild and describe it.

    Attributes:
        spec: The MONAI network and its arguments.
        weights: Its state dict (the global model, or a site's personalised one).
        network: The network as trained, weights loaded (DP-compatible under DP-SGD).
        image_shape: Spatial shape of the training images, when the checkpoint records it.
        description: Experiment, round and site, for humans.
        task: ``"segmentation"`` or ``"classification"``.
        preprocessing: How the run brought its cases to a common grid (applied again before
            inference by ``medfed predict``).
    """

    spec: NetworkSpec
    weights: Weights
    network: nn.Module
    image_shape: tuple[int, ...] | None
    description: str
    task: Task = "segmentation"
    preprocessing: Preprocessing = DEFAULT_PREPROCESSING


@dataclass(frozen=True)
class _Run:
    """Where a run keeps its round checkpoints and how it built its model and strategy."""

    name: str
    checkpoints: Path
    strategy: StrategyConfig
    privacy: PrivacyConfig
    seed: int
    task: Task
    preprocessing: PreprocessingConfig
    model: ModelConfig


def load_trained_model(
    run_dir: Path, *, experiment: str | None = None, round: int | None = None, site: str | None = None
) -> TrainedModel:
    """The model of ``experiment`` (default: the first strategy) after ``round`` (default: the
    last checkpointed one), personalised for ``site`` when given. ``run_dir`` is a run
    directory of ``medfed simulate`` or the ``--state-dir`` of ``medfed server`` (one job: no
    ``experiment``).

    Raises:
        CheckpointError: ``run_dir`` is neither, or has no such checkpoint.
        ConfigError: No such experiment, or the site has no personalised model.
    """
    run = (
        _deployed_run(run_dir, experiment)
        if (run_dir / JOB_FILE).is_file()
        else _simulated_run(run_dir, experiment)
    )
    checkpoint = load_checkpoint(_checkpoint_file(run, round))
    model_name, params = read_model_metadata(checkpoint)
    weights = checkpoint.server.weights
    if site is not None:
        weights = _site_weights(run, checkpoint, site)
    network = prepare_model(run.privacy.plan(), build_model(model_name, params, seed=run.seed))
    _load(network, weights, "the trained network")
    shape = checkpoint.metadata.get("image_shape")
    label = f"'{run.name}' after round {checkpoint.server.round}" + (
        f", personalised for site '{site}'" if site else ""
    )
    spec = network_spec(model_name, params)
    if spec.weight_standardization:  # exported as the plain MONAI network, weights standardised
        spec, weights = replace(spec, weight_standardization=False), folded_weights(network, weights)
        network = prepare_model(run.privacy.plan(), spec.build())
        _load(network, weights, "the trained network")
    return TrainedModel(
        spec=spec,
        weights=weights,
        network=network.eval(),
        image_shape=tuple(json.loads(shape)) if shape else None,
        description=f"{model_name} trained by medfed: experiment {label}",
        task=run.task,
        preprocessing=run.preprocessing.settings(run.model),
    )


def _simulated_run(run_dir: Path, experiment: str | None) -> _Run:
    config = resume_run(run_dir)
    if config.seeds is not None:
        raise ConfigError(
            f"'{run_dir}' ran seeds {config.seeds}, each in its own run directory: give one, "
            f"e.g. '{seed_dir(run_dir, config.seed)}'"
        )
    name = experiment or config.strategies[0].display_name
    folder = run_dir / "checkpoints"
    experiments = sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []
    if name not in experiments:
        raise ConfigError(f"export: no checkpoints of experiment '{name}'; experiments: {experiments}")
    by_label = {strategy.display_name: strategy for strategy in config.strategies}
    strategy = by_label.get(name, StrategyConfig(name="fedavg"))  # the baselines are FedAvg
    return _Run(
        name,
        folder / name,
        strategy,
        config.privacy,
        config.seed,
        config.task,
        config.preprocessing,
        config.model,
    )


def _deployed_run(state_dir: Path, experiment: str | None) -> _Run:
    job = load_job(state_dir / JOB_FILE)
    if experiment not in (None, job.name):
        raise ConfigError(f"export: '{state_dir}' holds the one job '{job.name}', not '{experiment}'")
    return _Run(
        job.name,
        state_dir / "checkpoints",
        job.strategy,
        job.privacy,
        job.seed,
        job.task,
        job.preprocessing,
        job.model,
    )


def export_model(model: TrainedModel, format: ExportFormat, output: Path) -> Path:
    """Writes ``model`` to ``output`` (a file, or a folder for a bundle); returns ``output``.

    Raises:
        ConfigError: ``output`` exists, or the format cannot hold this network (a DP-SGD model
            whose layers differ from MONAI's network has only the TorchScript form).
    """
    if output.exists():
        raise ConfigError(f"export: '{output}' already exists; remove it or choose another --output")
    if format is ExportFormat.TORCHSCRIPT:
        _write_torchscript(model.network, output)
        return output
    _load(
        model.spec.build(), model.weights, f"MONAI's {model.spec.network.__name__} (use --format torchscript)"
    )
    if format is ExportFormat.STATE_DICT:
        metadata = {
            "network": model.spec.target,
            "args": json.dumps(model.spec.args),
            "description": model.description,
        }
        atomic_write(output, save_bytes(_plain(model.weights), metadata=metadata))
    else:
        write_bundle(model, output)
    return output


def write_bundle(model: TrainedModel, folder: Path) -> None:
    """A MONAI bundle: ``configs/metadata.json``, ``configs/inference.json``,
    ``models/model.pt`` (a ``torch.save``d state dict) and ``docs/README.md``."""
    files = {
        "configs/metadata.json": json.dumps(bundle_metadata(model), indent=2),
        "configs/inference.json": json.dumps(inference_config(model), indent=2),
        "docs/README.md": _bundle_readme(model),
    }
    for name, text in files.items():
        atomic_write(folder / name, text.encode())
    (folder / "models").mkdir(parents=True, exist_ok=True)
    torch.save(_plain(model.weights), folder / "models" / "model.pt")


def bundle_metadata(model: TrainedModel) -> dict[str, Any]:
    """``configs/metadata.json`` in MONAI's bundle metadata schema."""
    spec = model.spec
    segmentation = spec.task == "segmentation"
    shape = _spatial_shape(model)
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": "exported by medfed"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": {},
        "name": f"medfed {spec.network.__name__}",
        "task": f"{spec.task} ({spec.spatial_dims}D)",
        "description": model.description,
        "authors": "medfed",
        "copyright": "the data owners of the federation",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "any",
                    "num_channels": spec.in_channels,
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(c): f"channel {c}" for c in range(spec.in_channels)},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image" if segmentation else "probabilities",
                    "format": "segmentation" if segmentation else "classification",
                    "num_channels": spec.out_channels,
                    "spatial_shape": shape if segmentation else [],
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(c): f"class {c}" for c in range(spec.out_channels)},
                }
            },
        },
    }


def inference_config(model: TrainedModel) -> dict[str, Any]:
    """``configs/inference.json``: the network, medfed's preprocessing (per-channel z-score over
    non-zero voxels), the inferer and softmax/argmax postprocessing."""
    spec = model.spec
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "ckpt_path": "$@bundle_root + '/models/model.pt'",
        "network_def": {"_target_": spec.target, **spec.args},
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True, "channel_wise": True},
                {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
            ],
        },
        "inferer": _inferer(model),
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            ],
        },
    }


def _inferer(model: TrainedModel) -> dict[str, Any]:
    """Sliding windows of the training size for a segmentation network, else the whole image;
    a network trained on slices (``model.slices``) runs on every slice (MONAI ``SliceInferer``,
    windows of the training slice's size, or of each slice's own size when unknown)."""
    if model.spec.task != "segmentation":
        return {"_target_": "SimpleInferer"}
    slices, shape = model.preprocessing.slices, model.image_shape
    if slices is None:
        if shape is None:
            return {"_target_": "SimpleInferer"}
        return {
            "_target_": "SlidingWindowInferer",
            "roi_size": list(shape),
            "sw_batch_size": 4,
            "overlap": 0.25,
        }
    axis = SLICE_AXES[slices]
    plane = [-1, -1] if shape is None else [size for index, size in enumerate(shape) if index != axis]
    return {
        "_target_": "SliceInferer",
        "spatial_dim": axis,
        "roi_size": plane,
        "sw_batch_size": 4,
        "overlap": 0.25,
    }


def _spatial_shape(model: TrainedModel) -> list[Any]:
    if model.spec.size_multiple > 1:
        return [f"{model.spec.size_multiple}*n"] * model.spec.spatial_dims
    if model.image_shape is not None:
        return list(model.image_shape)
    return ["*"] * model.spec.spatial_dims


def _bundle_readme(model: TrainedModel) -> str:
    return (
        f"# {model.description}\n\n"
        f"Network: `{model.spec.target}` with the arguments in `configs/inference.json` "
        "(`network_def`); weights: `models/model.pt` (a state dict).\n\n"
        "Inputs are normalised per channel to zero mean and unit variance over non-zero voxels, "
        "as in training. Outputs are logits; postprocessing applies softmax and argmax.\n\n"
        "```python\n"
        "import torch\n"
        "from monai.bundle import ConfigParser\n\n"
        "parser = ConfigParser()\n"
        'parser.read_config("configs/inference.json")\n'
        'network = parser.get_parsed_content("network_def")\n'
        'network.load_state_dict(torch.load("models/model.pt", weights_only=True))\n'
        "```\n"
    )


def _checkpoint_file(run: _Run, round: int | None) -> Path:
    rounds = round_checkpoints(run.checkpoints)
    if not rounds:
        raise CheckpointError(f"export: '{run.name}' has no completed round yet")
    chosen = max(rounds) if round is None else round
    if chosen not in rounds:
        raise ConfigError(
            f"export: no checkpoint of round {chosen} for '{run.name}'; kept rounds: {sorted(rounds)}"
        )
    return rounds[chosen]


def _site_weights(run: _Run, checkpoint: Checkpoint, site: str) -> Weights:
    """``site``'s personalised model: the global one with the site's private part."""
    if site not in checkpoint.sites:
        raise ConfigError(
            f"export: experiment '{run.name}' keeps no personalised model for site '{site}'; "
            f"sites with one: {sorted(checkpoint.sites)}"
        )
    strategy = STRATEGIES.create(run.strategy.name, **run.strategy.params)
    return strategy.site_model(checkpoint.server.weights, checkpoint.sites[site])


def _load(network: nn.Module, weights: Weights, what: str) -> None:
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"export: the checkpoint's weights do not fit {what}: {first}") from None


def _write_torchscript(network: nn.Module, output: Path) -> None:
    try:
        scripted = torch.jit.script(network)
    except Exception as error:  # TorchScript raises many unrelated types for unscriptable code
        raise ConfigError(
            f"export: {type(network).__name__} cannot be compiled to TorchScript: {error}"
        ) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(output))


def _plain(weights: Weights) -> Weights:
    return {name: storable(tensor) for name, tensor in weights.items()}
