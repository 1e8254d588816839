"""A peer-to-peer simulation keeps the provenance ledger: each site signs its trained models and
its merges (citing the models it averaged), every site's copy agrees, ``medfed ledger verify``
passes and detects tampering."""

from __future__ import annotations

from pathlib import Path

from builders import tiny_simulation
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.config.loading import parse_config
from medfed.orchestration.checkpoint import checkpoint_path, load_checkpoint
from medfed.orchestration.experiments import plan_experiments
from medfed.orchestration.federation_data import prepare_data
from medfed.orchestration.simulation import ExperimentRunner
from medfed.provenance import LedgerError, weights_digest
from medfed.provenance.verify import verify


def test_a_gossip_run_records_every_training_and_merge_and_verifies(tmp_path: Path) -> None:
    config = parse_config(
        tiny_simulation(
            tmp_path,
            data={"synthetic": {"cases_scale": 0.2}},
            model={"params": {"norm": "instance"}},
            training={"lr": 0.01},
            federation={"rounds": 2, "evaluate_every": 0, "topology": "gossip"},
            privacy={
                "accountant": "rdp",
                "epsilon": 50.0,
                "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0},
            },
        )
    )
    runner = ExperimentRunner(config, prepare_data(config.data, tmp_path / "data", seed=0), tmp_path)
    (experiment,) = plan_experiments(config, runner.data)
    runner.run(experiment)

    [found] = verify(tmp_path)
    sites = sorted(found.copies)
    entries = found.ledger.entries
    assert len(sites) == 3 and all(copy.head() == found.ledger.head() for copy in found.copies.values())
    # each round: every site's trained model, then every site's merge with its two neighbours
    assert [(e.round, e.kind, e.signer) for e in entries] == [
        (round, kind, site) for round in (1, 2) for kind in ("update", "aggregate") for site in sites
    ]
    round_two = entries[6:]
    updates = {e.signer: e.digest for e in round_two[:3]}
    for merge in round_two[3:]:
        assert sorted(merge.inputs) == sorted(updates.values()) and merge.num_samples == 0
    assert all(set(e.privacy) == {"epsilon", "delta"} for e in entries if e.kind == "update")
    assert entries[0].privacy["epsilon"] < entries[6].privacy["epsilon"]
    final = load_checkpoint(checkpoint_path(tmp_path / "checkpoints" / experiment.name, 2))
    assert {site: weights_digest(final.sites[site].weights) for site in sites} == {
        merge.signer: merge.digest for merge in round_two[3:]
    }

    assert CliRunner().invoke(app, ["ledger", "verify", str(tmp_path)]).exit_code == 0
    copy = found.copies[sites[1]].path
    lines = copy.read_bytes().splitlines(keepends=True)
    copy.write_bytes(b"".join(lines[:4] + lines[5:]))  # one merge taken out of a site's copy
    tampered = CliRunner().invoke(app, ["ledger", "verify", str(tmp_path)])
    assert isinstance(tampered.exception, LedgerError)  # ``medfed``: one line, exit status 2
    assert "copy" in str(tampered.exception) and "entry 4: numbered 5 at position 4" in str(
        tampered.exception
    )
