"""``medfed simulate`` keeps a provenance ledger per federated experiment: it verifies after an
interrupted and resumed run, records what each site sent under secure aggregation with its
privacy spent, records the checkpointed model, and feeds the report."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.orchestration.simulation import Callbacks
from medfed.provenance.verify import recorded_model, verify
from medfed.simulator import run_simulation


class _Crash(Exception):
    pass


def _crash(round: int) -> None:
    if round == 1:
        raise _Crash


def test_a_resumed_secure_dp_run_keeps_a_ledger_that_verifies(tmp_path: Path) -> None:
    config = parse_config(
        tiny_simulation(
            tmp_path,
            data={"synthetic": {"cases_scale": 0.2}},
            model={"params": {"norm": "instance"}},
            training={"local_epochs": 2, "batch_size": 8},
            federation={"rounds": 2, "min_sites": 2},
            privacy={
                "epsilon": 50.0,
                "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0},
                "secure_aggregation": {"threshold_fraction": 0.6},
            },
        )
    )
    with pytest.raises(_Crash):
        run_simulation(config, callbacks=Callbacks(on_round=_crash))
    run_dir = run_simulation(config, resume=True).run_dir

    [found] = verify(run_dir)
    entries = found.ledger.entries
    sites = sorted(found.copies)
    assert [entry.kind for entry in entries] == (["update"] * len(sites) + ["aggregate"]) * 2
    assert [entry.signer for entry in entries[: len(sites)]] == sites
    first, second = entries[0], entries[len(sites) + 1]
    assert first.signer == second.signer and 0 < first.privacy["epsilon"] < second.privacy["epsilon"]
    assert entries[-1].inputs == tuple(entry.digest for entry in entries[len(sites) + 1 : -1])
    checkpoint = run_dir / "checkpoints" / "fedavg" / "round_0002.safetensors"
    assert recorded_model([found], checkpoint) == entries[-1]
    assert "Contributions (provenance ledger, verified)" in (run_dir / "report.html").read_text()
