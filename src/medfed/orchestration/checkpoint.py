"""Round checkpoints in safetensors, written atomically: a crash leaves the last one intact.

One file holds the server state and, in simulation, the private state of each site that has any
(``Strategy.private_state``: FedBN's norm layers, SCAFFOLD's control variate). Keys are
flattened as ``server/weights/<name>``, ``server/extra/<group>/<name>``,
``site/<site>/weights/<name>`` and ``site/<site>/extra/<group>/<name>``. In deployment a site
keeps its own state in a file of its own (``save_site_state``, keys ``site/...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save as save_bytes

from medfed.errors import CheckpointError
from medfed.files import atomic_write
from medfed.orchestration.validation import non_finite_keys
from medfed.transport.payload import flatten, read_safetensors, unflatten
from medfed.types import SCHEMA_VERSION, ServerState, SiteState

_ROUND_FILE = re.compile(r"round_(\d{4,})\.safetensors$")


@dataclass(frozen=True)
class Checkpoint:
    """A completed round: server state, simulated sites' states and free-form metadata."""

    server: ServerState
    sites: Mapping[str, SiteState] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


def checkpoint_path(directory: Path, round: int) -> Path:
    """Where the checkpoint of ``round`` lives in ``directory``."""
    return directory / f"round_{round:04d}.safetensors"


def latest_checkpoint(directory: Path) -> Path | None:
    """The checkpoint of the highest completed round in ``directory``, or ``None``."""
    rounds = round_checkpoints(directory)
    return rounds[max(rounds)] if rounds else None


def round_checkpoints(directory: Path) -> dict[int, Path]:
    """Every round checkpoint in ``directory`` by round number (empty when there is none)."""
    if not directory.is_dir():
        return {}
    return {
        int(match.group(1)): path
        for path in directory.iterdir()
        if (match := _ROUND_FILE.fullmatch(path.name))
    }


def save_round(directory: Path, checkpoint: Checkpoint, *, keep_last: int | None) -> Path:
    """Saves ``checkpoint`` as its round's file in ``directory``, then deletes all but the
    ``keep_last`` newest round files (none when ``keep_last`` is ``None``).

    Older files go only after the new one is durably on disk, so a crash at any point leaves
    a checkpoint to resume from.
    """
    path = checkpoint_path(directory, checkpoint.server.round)
    save_checkpoint(path, checkpoint)
    if keep_last is not None:
        rounds = round_checkpoints(directory)
        for round in sorted(rounds)[:-keep_last]:
            rounds[round].unlink(missing_ok=True)
    return path


def model_metadata(
    name: str, params: Mapping[str, object], image_shape: Sequence[int] | None = None
) -> dict[str, str]:
    """Checkpoint metadata naming the network (and the spatial shape of the training images
    when known), so that ``medfed export`` can rebuild and describe it."""
    metadata = {"model": name, "model_params": json.dumps(dict(params), sort_keys=True)}
    if image_shape is not None:
        metadata["image_shape"] = json.dumps([int(size) for size in image_shape])
    return metadata


def read_model_metadata(checkpoint: Checkpoint) -> tuple[str, dict[str, Any]]:
    """The network's registry name and parameters that ``model_metadata`` recorded.

    Raises:
        CheckpointError: The checkpoint does not name its network (written before medfed
            recorded it).
    """
    try:
        return checkpoint.metadata["model"], json.loads(checkpoint.metadata["model_params"])
    except (KeyError, ValueError) as error:
        raise CheckpointError(
            f"the checkpoint does not name its network ({error}); re-run to export it"
        ) from None


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Writes ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        CheckpointError: The server state holds a NaN or an infinity (nothing is written: a
            resumed run must never start from a poisoned model).
    """
    _check_finite(checkpoint.server, f"checkpoint '{path}'")
    tensors = flatten(checkpoint.server.weights, checkpoint.server.extra, "server/", copy=True)
    for name, site in checkpoint.sites.items():
        tensors.update(flatten(site.weights, site.extra, f"site/{name}/", copy=True))
    metadata = {
        "schema_version": str(SCHEMA_VERSION),
        "round": str(checkpoint.server.round),
        "sites": json.dumps(sorted(checkpoint.sites)),
        **checkpoint.metadata,
    }
    atomic_write(path, save_bytes(tensors, metadata=metadata))


def load_checkpoint(path: Path) -> Checkpoint:
    """Reads a checkpoint written by ``save_checkpoint``.

    Raises:
        CheckpointError: The file is missing, truncated, or of another schema version, or its
            server state holds a NaN or an infinity.
    """
    tensors, metadata = _read(path, "checkpoint")
    weights, extra = unflatten(tensors, "server/")
    server = ServerState(round=int(metadata["round"]), weights=weights, extra=extra)
    _check_finite(server, f"checkpoint '{path}'")
    sites = {}
    for name in json.loads(metadata["sites"]):
        site_weights, site_extra = unflatten(tensors, f"site/{name}/")
        sites[name] = SiteState(weights=site_weights, extra=site_extra)
    return Checkpoint(server=server, sites=sites, metadata=metadata)


def save_site_state(path: Path, state: SiteState, metadata: Mapping[str, str]) -> None:
    """Writes a deployed site's private ``state`` to ``path`` atomically, with ``metadata``."""
    tensors = flatten(state.weights, state.extra, "site/", copy=True)
    atomic_write(path, save_bytes(tensors, metadata={"schema_version": str(SCHEMA_VERSION), **metadata}))


def load_site_state(path: Path) -> tuple[SiteState, dict[str, str]]:
    """The state and metadata ``save_site_state`` wrote.

    Raises:
        CheckpointError: The file is missing, truncated, or of another schema version.
    """
    tensors, metadata = _read(path, "site state")
    weights, extra = unflatten(tensors, "site/")
    return SiteState(weights=weights, extra=extra), metadata


def _read(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        tensors, metadata = read_safetensors(path.read_bytes())
    except (OSError, SafetensorError, ValueError) as error:
        raise CheckpointError(f"cannot read {what} '{path}': {error}") from error
    if metadata.get("schema_version") != str(SCHEMA_VERSION):
        raise CheckpointError(
            f"{what} '{path}' has schema version {metadata.get('schema_version')}, "
            f"this medfed reads {SCHEMA_VERSION}"
        )
    return tensors, metadata


def _check_finite(server: ServerState, what: str) -> None:
    bad = non_finite_keys(server.weights, server.extra)
    if bad:
        raise CheckpointError(f"{what}: the server state is not finite in {bad[:5]}")


def storable(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of ``tensor`` sharing no memory, as safetensors (and
    ``torch.save`` of a plain state dict) want."""
    return tensor.detach().to("cpu").contiguous().clone()
