"""The job YAML, the site's view of it, and the status file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from medfed.deployment.job import load_job, parse_site_job, site_job_json
from medfed.deployment.status import ServerStatus, read_status, summarise, write_status
from medfed.errors import ConfigError


def test_job_yaml_reuses_schema_pieces_and_sites_get_their_part(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        "name: j\nseed: 4\nstrategy: {name: fedprox, mu: 0.1}\nfederation: {rounds: 2, min_sites: 2}\n"
        "model: {name: unet, params: {channels: [4, 8], strides: [2]}}\nround_timeout_s: 30\n"
    )
    job = load_job(path)
    site = parse_site_job(site_job_json(job))
    assert site.seed == 4 and site.strategy.params == {"mu": 0.1} and site.model.params["channels"] == [4, 8]
    assert "round_timeout_s" not in site_job_json(job)


def test_a_job_takes_set_overrides_validated_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: j\nfederation: {rounds: 2}\nstrategy: {name: fedavg}\n")
    job = load_job(path, ["federation.rounds=30", "strategy={name: fedprox, mu: 0.5}", "round_timeout_s=60"])
    assert job.federation.rounds == 30 and job.strategy.params == {"mu": 0.5} and job.round_timeout_s == 60
    assert load_job(path, ["training.lr=0.01"]).training.lr == 0.01  # a missing mapping is created
    with pytest.raises(ConfigError, match="federation.rounds"):
        load_job(path, ["federation.rounds=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_job(path, ["rounds"])


@pytest.mark.parametrize(
    "text",
    [
        "round_timeout_s: -1\n",
        "bogus: 1\n",
        "federation: {rounds: 0}\n",
        ": :",
        "strategy: {name: fedprox, mu: -1}\n",
        "strategy: {name: scaffold}\nprivacy: {secure_aggregation: {}}\n",
        "strategy: {name: scaffold}\nprivacy: {encryption: {scheme: ckks}}\n",
    ],
)
def test_bad_job_files_raise_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_job(path)


def test_invalid_job_from_server_raises_config_error() -> None:
    with pytest.raises(ConfigError):
        parse_site_job('{"seed": "x"}')


def test_status_round_trip_and_summary(tmp_path: Path) -> None:
    summary = summarise(3, ["b", "a"], [{"loss": 1.0, "steps": 2.0}, {"loss": 3.0}])
    assert summary.sites == ["a", "b"] and summary.metrics == {"loss": 2.0, "steps": 2.0}
    declined = {"c": "round 2: site policy: job has no DP-SGD but this site requires it"}
    write_status(
        tmp_path,
        ServerStatus(
            job="j", port=1, completed_rounds=3, total_rounds=5, history=[summary], declined=declined
        ),
    )
    back = read_status(tmp_path)
    assert back.completed_rounds == 3 and back.history == [summary] and back.declined == declined
    with pytest.raises(ConfigError):
        read_status(tmp_path / "missing")


def test_a_deployed_job_refuses_a_peer_to_peer_topology(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("name: j\nfederation: {topology: gossip}\n")
    with pytest.raises(ConfigError, match="'gossip' has no server"):
        load_job(path)


def test_a_job_training_batchnorm_on_batches_of_one_is_refused_before_any_site_trains(
    tmp_path: Path,
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("task: classification\nmodel: {name: resnet}\ntraining: {batch_size: 1}\n")
    with pytest.raises(
        ConfigError, match=re.escape(f"job file '{path}': training.batch_size 1 with model 'resnet'")
    ):
        load_job(path)
    assert load_job(path, ["training.batch_size=2"]).training.batch_size == 2
