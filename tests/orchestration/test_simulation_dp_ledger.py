"""DP-SGD in ``medfed simulate``: one append-only ledger per site and experiment, one release per
round, and the epsilon metric equals the ledger's total."""

from __future__ import annotations

from pathlib import Path

from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.privacy.dp.ledger import load_ledger
from medfed.simulator import run_simulation

ROUNDS = 2


def test_each_site_of_a_simulated_experiment_charges_one_release_per_round(tmp_path: Path) -> None:
    config = parse_config(
        tiny_simulation(
            tmp_path,
            data={"synthetic": {"cases_scale": 0.2}},
            model={"params": {"norm": "instance"}},
            training={"local_epochs": 2, "batch_size": 8},
            federation={"rounds": ROUNDS, "min_sites": 2},
            privacy={
                "accountant": "rdp",
                "epsilon": 50.0,
                "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0},
            },
        )
    )
    run_dir = run_simulation(config).run_dir
    ledgers = sorted((run_dir / "privacy" / "fedavg").glob("*.jsonl"))
    assert ledgers and all(path.name.count("-") == 1 for path in ledgers)  # <site>-<fingerprint>
    for path in ledgers:
        ledger = load_ledger(path)
        assert len(ledger.releases) == ROUNDS and {release.job for release in ledger.releases} == {"fedavg"}
        assert 0 < ledger.epsilon() <= 50.0
