"""DP-SGD in ``medfed simulate``: one append-only ledger per site and experiment, one release per
round, and the epsilon metric equals the ledger's total."""

from __future__ import annotations

from pathlib import Path

from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.orchestration.federation_data import prepare_data
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


def test_a_slice_trained_3d_experiment_is_charged_per_patient(tmp_path: Path) -> None:
    config = parse_config(
        {
            "data": {
                "synthetic": {"image_size": 16, "dims": 3, "cases_scale": 0.2, "studies_per_patient": 2}
            },
            "model": {"params": {"channels": [4, 8], "strides": [2], "norm": "instance"}, "slices": "axial"},
            "training": {"local_epochs": 1, "batch_size": 16},
            "federation": {"rounds": 1, "min_sites": 2},
            "strategies": [{"name": "fedavg"}],
            "baselines": {"centralized": False, "local": False},
            "output_dir": str(tmp_path),
            "privacy": {
                "accountant": "rdp",
                "epsilon": 50.0,
                "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0},
            },
        }
    )
    run_dir = run_simulation(config).run_dir
    train = prepare_data(config.data, tmp_path / "data", seed=config.seed).train
    for name, site in train.items():
        (path,) = (run_dir / "privacy" / "fedavg").glob(f"{name}-*.jsonl")
        (release,) = load_ledger(path).releases
        patients, slices = len({case.patient for case in site.cases}), 16 * len(site.cases)
        expected = max(1, 16 * patients // slices)  # patients in a batch of about 16 slices
        assert patients < len(site.cases)  # two studies per patient
        assert release.unit == "patient" and release.mechanism.sample_rate == 1 / -(-patients // expected)
    metrics = (run_dir / "metrics.csv").read_text()
    assert ",dice," in metrics and ",epsilon," in metrics
