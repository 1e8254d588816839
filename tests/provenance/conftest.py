"""A small recorded federation: two sites, two rounds, the server's ledger and each site's copy."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_helpers import SITES, Recorded, weights
from safetensors.torch import save_file

from medfed.orchestration.recording import SERVER, LedgerRecorder, run_keys
from medfed.types import ServerState, TrainResult


@pytest.fixture
def recorded(tmp_path: Path) -> Recorded:
    keys, signers = run_keys(tmp_path, [*SITES, SERVER])
    folder = tmp_path / "provenance" / "fedavg"
    recorder = LedgerRecorder(folder, keys, signers, SITES)
    for round in (1, 2):
        results = [
            TrainResult(
                site, round, weights(round + index / 10), num_samples=10 + index, metrics={"loss": 0.5}
            )
            for index, site in enumerate(SITES)
        ]
        privacy = {site: {"epsilon": 0.5 * round} for site in SITES}
        recorder.record_round(ServerState(round, weights(round + 0.05)), results, privacy)
    model = tmp_path / "model.safetensors"
    save_file(weights(2.05), str(model))
    return Recorded(tmp_path, folder / "ledger.jsonl", keys, signers, model)
