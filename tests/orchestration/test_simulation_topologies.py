"""``federation.topology`` in ``medfed simulate``: each peer-to-peer topology trains on tiny data
and beats the initial model; its rows (consensus, each site's model, bytes) share the metrics log."""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
import torch
import yaml
from builders import tiny_simulation

from medfed.config.loading import parse_config
from medfed.errors import ConfigError
from medfed.orchestration.experiments import plan_experiments
from medfed.orchestration.federation_data import prepare_data
from medfed.orchestration.run_dir import config_yaml
from medfed.orchestration.simulation import Callbacks, ExperimentRunner
from medfed.privacy.dp.ledger import load_ledger
from medfed.training import evaluate_cases

TINY = tiny_simulation(
    data={"synthetic": {"cases_scale": 0.2}},
    training={"lr": 0.01},
    federation={"rounds": 2, "evaluate_every": 0},
)


def _runner(tmp_path: Path, topology: object, **federation: object) -> ExperimentRunner:
    raw = {**TINY, "output_dir": str(tmp_path)}
    raw["federation"] = {**TINY["federation"], "topology": topology, **federation}
    config = parse_config(raw)
    return ExperimentRunner(config, prepare_data(config.data, tmp_path / "data", seed=0), tmp_path)


@pytest.mark.parametrize("topology", ["braintorrent", "cyclic", "gossip"])
def test_each_topology_improves_dice_over_the_initial_model(tmp_path: Path, topology: str) -> None:
    runner = _runner(tmp_path, topology)
    model = runner.new_model()
    initial = fmean(
        evaluate_cases(model, data, task="segmentation", batch_size=4)[0]["dice"]
        for data in runner.evaluation_sets.values()
    )
    (experiment,) = plan_experiments(runner.config, runner.data)
    assert experiment.name == f"{topology}-fedavg"
    runner.run(experiment)
    rows = runner.metrics.rows(experiment.name)
    consensus = [row.value for row in rows if row.metric == "dice" and row.split in ("test", "unseen")]
    assert len(consensus) == 4 and fmean(consensus) > initial
    own_models = {
        (row.experiment, row.split)
        for row in runner.metrics.rows()
        if row.metric == "dice" and row.experiment != experiment.name
    }
    assert own_models == {
        (f"{experiment.name}@hospital_{s}", split) for s in "abc" for split in ("test", "unseen")
    }
    sent = {row.site: row.value for row in rows if row.split == "traffic" and row.metric == "bytes_sent"}
    assert sent and all(value >= 0 for value in sent.values()) and sum(sent.values()) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategies": [{"name": "scaffold"}]}, "runs only strategies"),
        ({"privacy": {"secure_aggregation": {}}}, "no server for privacy"),
        (
            {"federation": {"topology": {"name": "gossip", "order": "random"}}},
            "do not apply to topology 'gossip'",
        ),
        ({"federation": {"topology": "gossip", "fraction": 0.5}}, "federation.fraction"),
    ],
)
def test_what_a_peer_to_peer_run_cannot_do_is_refused(change: dict[str, Any], message: str) -> None:
    raw = {**TINY, "federation": {"topology": "cyclic"}, **change}
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_an_impossible_gossip_graph_is_one_config_error(tmp_path: Path) -> None:
    runner = _runner(tmp_path, {"name": "gossip", "graph": "random_regular", "degree": 5})
    (experiment,) = plan_experiments(runner.config, runner.data)
    with pytest.raises(ConfigError, match="federation.topology: no 5-regular graph on 3 sites"):
        runner.run(experiment)


def test_a_site_drawn_past_its_planned_trainings_is_refused_by_its_own_ledger(tmp_path: Path) -> None:
    raw = {
        **TINY,
        "model": {"params": {"channels": [4, 8], "strides": [2], "norm": "instance"}},
        "federation": {"rounds": 1, "topology": {"name": "braintorrent", "pulls_per_round": 4}},
        "privacy": {"accountant": "rdp", "epsilon": 50.0, "dp_sgd": {"noise": "calibrated"}},
        "output_dir": str(tmp_path),
    }
    config = parse_config(raw)
    runner = ExperimentRunner(config, prepare_data(config.data, tmp_path / "data", seed=0), tmp_path)
    (experiment,) = plan_experiments(config, runner.data)
    runner.run(experiment)
    ledgers = [load_ledger(path) for path in (tmp_path / "privacy" / experiment.name).glob("*.jsonl")]
    # calibrated for one training per site: 4 pulls over 3 sites draw one site twice, and its
    # ledger refuses the second training
    assert ledgers and all(len(ledger.releases) <= 1 and ledger.epsilon() <= 50.0 for ledger in ledgers)
    assert sum(len(ledger.releases) for ledger in ledgers) <= 3


def test_the_resolved_configuration_reads_back(tmp_path: Path) -> None:
    config = parse_config({**TINY, "federation": {"topology": {"name": "cyclic", "order": "random"}}})
    again = parse_config(yaml.safe_load(config_yaml(config)))
    assert again.federation.topology == config.federation.topology


def test_a_resumed_braintorrent_run_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    topology = {"name": "braintorrent", "pulls_per_round": 2}

    def run(folder: str, rounds: int) -> tuple[dict[str, torch.Tensor], list[str]]:
        trained: list[str] = []
        runner = _runner(tmp_path / folder, topology, rounds=rounds)
        runner.callbacks = Callbacks(on_site=trained.append)
        (experiment,) = plan_experiments(runner.config, runner.data)
        return runner.run(experiment).state.weights, trained

    whole, _ = run("whole", 2)
    run("resumed", 1)
    resumed, trained = run("resumed", 2)
    assert len(trained) == 2  # only round 2's pulls: round 1 came from its checkpoint
    assert all(torch.equal(whole[key], resumed[key]) for key in whole)
