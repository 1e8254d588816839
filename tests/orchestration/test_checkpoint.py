from pathlib import Path

import pytest
import torch

from medfed.errors import CheckpointError
from medfed.orchestration.checkpoint import (
    Checkpoint,
    checkpoint_path,
    latest_checkpoint,
    load_checkpoint,
    model_metadata,
    read_model_metadata,
    round_checkpoints,
    save_checkpoint,
    save_round,
)
from medfed.types import ServerState, SiteState


def _checkpoint(round: int) -> Checkpoint:
    server = ServerState(
        round=round,
        weights={"conv.weight": torch.arange(6.0).reshape(2, 3), "bn.num_batches_tracked": torch.tensor(4)},
        extra={"m": {"conv.weight": torch.ones(2, 3)}},
    )
    site = SiteState(
        weights={"conv.weight": torch.zeros(2, 3)},
        extra={"control": {"conv.weight": torch.full((2, 3), 0.5)}},
    )
    return Checkpoint(server=server, sites={"hospital_a": site}, metadata={"experiment": "fedavg"})


def test_round_trip_keeps_server_and_site_state(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, 3)
    save_checkpoint(path, _checkpoint(3))
    loaded = load_checkpoint(path)
    assert loaded.server.round == 3
    assert torch.equal(loaded.server.weights["conv.weight"], torch.arange(6.0).reshape(2, 3))
    assert loaded.server.weights["bn.num_batches_tracked"].dtype == torch.int64
    assert torch.equal(loaded.server.extra["m"]["conv.weight"], torch.ones(2, 3))
    assert torch.equal(loaded.sites["hospital_a"].extra["control"]["conv.weight"], torch.full((2, 3), 0.5))
    assert loaded.metadata["experiment"] == "fedavg"


def test_latest_checkpoint_picks_highest_round_and_ignores_temporaries(tmp_path: Path) -> None:
    for round in (1, 2, 10):
        save_checkpoint(checkpoint_path(tmp_path, round), _checkpoint(round))
    (tmp_path / ".round_0011.safetensors.tmp").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 10)
    assert latest_checkpoint(tmp_path / "missing") is None


def test_truncated_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(path, _checkpoint(1))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="round_0001"):
        load_checkpoint(path)


def test_failed_write_leaves_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = checkpoint_path(tmp_path, 1)
    save_checkpoint(path, _checkpoint(1))
    before = path.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, _checkpoint(2))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("where", ["weights", "extra"])
def test_a_non_finite_server_state_is_never_written(tmp_path: Path, where: str) -> None:
    checkpoint = _checkpoint(2)
    poisoned = (
        checkpoint.server.weights["conv.weight"]
        if where == "weights"
        else checkpoint.server.extra["m"]["conv.weight"]
    )
    poisoned[0, 1] = float("inf")
    path = checkpoint_path(tmp_path, 2)
    with pytest.raises(CheckpointError, match="not finite in"):
        save_checkpoint(path, checkpoint)
    assert latest_checkpoint(tmp_path) is None


def test_a_non_finite_checkpoint_is_not_resumed_from(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = checkpoint_path(tmp_path, 1)
    save_file(
        {"server/weights/w": torch.tensor([float("nan")])},
        str(path),
        metadata={"schema_version": "1", "round": "1", "sites": "[]"},
    )
    with pytest.raises(CheckpointError, match="not finite in \\['w'\\]"):
        load_checkpoint(path)


def test_an_extra_group_name_with_a_slash_is_refused_not_saved_under_another_group(tmp_path: Path) -> None:
    server = ServerState(round=1, weights={"w": torch.ones(2)}, extra={"a/b": {"w": torch.ones(2)}})
    path = checkpoint_path(tmp_path, 1)
    with pytest.raises(ValueError, match="may not contain '/'"):
        save_checkpoint(path, Checkpoint(server=server))
    assert not path.exists()


def test_save_round_keeps_only_the_newest_rounds(tmp_path: Path) -> None:
    for round in range(1, 6):
        save_round(tmp_path, _checkpoint(round), keep_last=2)
    assert sorted(round_checkpoints(tmp_path)) == [4, 5]
    save_round(tmp_path, _checkpoint(6), keep_last=None)
    assert sorted(round_checkpoints(tmp_path)) == [4, 5, 6]


def test_a_failed_save_deletes_no_older_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_round(tmp_path, _checkpoint(1), keep_last=1)

    def disk_full(path: Path, data: bytes, **_: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr("medfed.orchestration.checkpoint.atomic_write", disk_full)
    with pytest.raises(OSError):
        save_round(tmp_path, _checkpoint(2), keep_last=1)
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 1)
    assert load_checkpoint(checkpoint_path(tmp_path, 1)).server.round == 1


def test_model_metadata_round_trips_and_its_absence_is_named(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, 1)
    metadata = model_metadata("unet", {"strides": [2], "in_channels": 1}, image_shape=(16, 16))
    save_checkpoint(path, Checkpoint(_checkpoint(1).server, metadata=metadata))
    loaded = load_checkpoint(path)
    assert read_model_metadata(loaded) == ("unet", {"strides": [2], "in_channels": 1})
    assert loaded.metadata["image_shape"] == "[16, 16]"
    with pytest.raises(CheckpointError, match="does not name its network"):
        read_model_metadata(_checkpoint(1))
