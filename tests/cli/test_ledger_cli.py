"""``medfed ledger verify`` and ``medfed ledger show`` on a recorded federation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.orchestration.recording import SERVER, LedgerRecorder, run_keys
from medfed.types import ServerState, TrainResult

SITES = ["hospital_a", "hospital_b"]


def _record(run_dir: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    keys, signers = run_keys(run_dir, [*SITES, SERVER])
    recorder = LedgerRecorder(run_dir / "provenance" / "fedavg", keys, signers, SITES)
    model = {"w": torch.ones(3)}
    results = [TrainResult(site, 1, {"w": torch.zeros(3)}, num_samples=4) for site in SITES]
    recorder.record_round(ServerState(1, model), results, {"hospital_a": {"epsilon": 1.5}})
    save_file(model, str(run_dir / "model.safetensors"))
    return run_dir


def test_verify_and_show_a_sound_ledger(tmp_path: Path) -> None:
    run_dir = _record(tmp_path)
    result = CliRunner().invoke(
        app, ["ledger", "verify", str(run_dir), "--model", str(run_dir / "model.safetensors")]
    )
    assert result.exit_code == 0, result.output
    assert "3 entries" in result.output and "is the model of round 1 (entry 2)" in result.output
    shown = CliRunner().invoke(app, ["ledger", "show", str(run_dir)])
    assert shown.exit_code == 0 and "hospital_a" in shown.output and "epsilon=1.5" in shown.output


@pytest.mark.integration
def test_a_tampered_ledger_fails_in_one_line_naming_the_entry(tmp_path: Path) -> None:
    run_dir = _record(tmp_path)
    ledger = run_dir / "provenance" / "fedavg" / "ledger.jsonl"
    ledger.write_bytes(ledger.read_bytes().replace(b'"num_samples":4', b'"num_samples":9', 1))
    command = [
        sys.executable,
        "-c",
        "from medfed.cli.app import main; main()",
        "ledger",
        "verify",
        str(run_dir),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stdout.splitlines()
    assert line.startswith("error: ledger ") and "entry 0: bad signature" in line
    assert "Traceback" not in result.stderr
