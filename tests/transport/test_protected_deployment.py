"""Secure aggregation, CKKS and DP-SGD over the gRPC deployment: real processes, mutual TLS."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch
from deploy_procs import SITES, deploy, in_process_run, processes, site_state_dir, wait_all

from medfed.orchestration.checkpoint import checkpoint_path, load_checkpoint
from medfed.privacy.dp.ledger import load_ledger
from medfed.provenance.verify import verify
from medfed.types import AGGREGATE_SITE, Weights

pytestmark = pytest.mark.integration  # starts real medfed processes

ROUNDS = 2
# SGD: Adam would turn the fixed-point rounding of round 1 into ~1e-3 differences in round 2.
TRAINING = {"local_epochs": 1, "batch_size": 4, "lr": 0.01, "optimizer": "sgd"}


def _run(
    tmp_path: Path,
    privacy: dict[str, Any],
    *,
    encryption: str | None = None,
    client_extra: dict[str, list[str]] | None = None,
) -> tuple[Path, Any]:
    federation = deploy(
        tmp_path,
        {"hospital_a": 6, "hospital_b": 5, "hospital_c": 4},
        encryption=encryption,
        training=TRAINING,
        federation={"rounds": ROUNDS, "min_sites": 2},
        privacy=privacy,
    )
    with processes(tmp_path / "logs") as group:
        wait_all(group, federation.start_all(group, client_extra), timeout=240)
    final = load_checkpoint(checkpoint_path(federation.state / "checkpoints", ROUNDS)).server
    return federation.job, (final, federation.data, group)


def _assert_same_model(protected: Weights, plain: Weights, *, atol: float, rtol: float) -> None:
    assert plain.keys() == protected.keys()
    for name, tensor in plain.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(protected[name], tensor, atol=atol, rtol=rtol, msg=name)


def test_secure_aggregation_over_mtls_gives_plain_fedavg_and_the_server_sees_only_the_sum(
    tmp_path: Path,
) -> None:
    job, (final, data, group) = _run(tmp_path, {"secure_aggregation": {"threshold_fraction": 0.5}})
    _assert_same_model(final.weights, in_process_run(job, data, in_the_clear=True), atol=1e-4, rtol=0)
    log = group.log("server")
    assert log.count("secure sum of ['hospital_a', 'hospital_b', 'hospital_c']") == ROUNDS, log
    assert _sites_in_metrics(tmp_path / "state") == {AGGREGATE_SITE}  # no site's own result arrived
    signed = "secure aggregation: the keys of all 3 participants are signed by their sites"
    assert all(group.log(site).count(signed) == ROUNDS for site in SITES)  # authenticated by the PKI
    # Evaluation follows the round, outside its protocol: each site's metrics of the global model.
    assert _sites_in_metrics(tmp_path / "state", split="eval") == set(SITES)
    _assert_each_site_signed_what_it_sent(tmp_path / "state")


def _assert_each_site_signed_what_it_sent(state: Path) -> None:
    """Each round's ledger: every site's digest of its protocol messages (it signed it, so it
    is the digest of what it sent), then the aggregate citing them; every copy agrees."""
    [found] = verify(state)
    entries = found.ledger.entries
    assert [(e.round, e.kind, e.signer) for e in entries] == [
        (round, kind, signer)
        for round in range(1, ROUNDS + 1)
        for kind, signer in [*(("update", site) for site in SITES), ("aggregate", "server")]
    ]
    for aggregate in entries[len(SITES) :: len(SITES) + 1]:
        updates = entries[aggregate.index - len(SITES) : aggregate.index]
        assert aggregate.inputs == tuple(e.digest for e in updates)
        assert len(set(aggregate.inputs)) == len(SITES) and all(e.num_samples == 0 for e in updates)
    for site in SITES:
        [copy] = (site_state_dir(state.parent / "kits", site) / "provenance").glob("*/ledger.jsonl")
        assert verify(copy)[0].ledger.head() == found.ledger.head()


def _sites_in_metrics(state: Path, split: str = "train") -> set[str]:
    with sqlite3.connect(state / "metrics.sqlite") as db:
        return {site for (site,) in db.execute("SELECT DISTINCT site FROM metrics WHERE split = ?", (split,))}


def test_ckks_over_mtls_gives_plain_fedavg_from_ciphertexts_summed_without_a_key(tmp_path: Path) -> None:
    job, (final, data, group) = _run(tmp_path, {"encryption": {"scheme": "ckks"}}, encryption="ckks")
    _assert_same_model(final.weights, in_process_run(job, data, in_the_clear=True), atol=1e-3, rtol=1e-3)
    assert _sites_in_metrics(tmp_path / "state") == {AGGREGATE_SITE}
    assert "no site decrypted" not in group.log("server")
    _assert_each_site_signed_what_it_sent(tmp_path / "state")


def test_dp_sgd_sites_decline_once_their_own_budget_is_spent_and_client_dp_is_accounted(
    tmp_path: Path,
) -> None:
    privacy = {
        "epsilon": 50.0,
        "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0},
        "client_dp": {"noise_multiplier": 0.5, "clip": 10.0},
    }
    _, (final, _, group) = _run(tmp_path, privacy, client_extra={"hospital_c": ["--epsilon", "0.01"]})
    for round in range(1, ROUNDS + 1):
        checkpoint = load_checkpoint(checkpoint_path(tmp_path / "state" / "checkpoints", round))
        assert checkpoint.metadata["participants"] == "hospital_a,hospital_b"
    assert "site 'hospital_c' declined" in group.log("server")
    assert "0 rounds trained here" in group.log("hospital_c")
    ledgers = lambda site: list((site_state_dir(tmp_path / "kits", site) / "privacy").glob(f"{site}-*.jsonl"))
    assert all(len(load_ledger(ledgers(site)[0]).releases) == ROUNDS for site in ("hospital_a", "hospital_b"))
    assert all(not load_ledger(path).releases for path in ledgers("hospital_c"))  # declined: never charged
    with sqlite3.connect(tmp_path / "state" / "metrics.sqlite") as db:
        spent = db.execute(
            "SELECT site, round, value FROM metrics WHERE metric = 'epsilon' ORDER BY site, round"
        ).fetchall()
        server = db.execute(
            "SELECT value FROM metrics WHERE site = 'server' AND metric = 'client_epsilon' ORDER BY round"
        ).fetchall()
    assert [(site, round) for site, round, _ in spent] == [
        ("hospital_a", 1),
        ("hospital_a", 2),
        ("hospital_b", 1),
        ("hospital_b", 2),
    ]
    assert all(0 < value <= 50 for _, _, value in spent) and spent[0][2] < spent[1][2]
    # each site's update entry states its privacy spent, as its budget ledger has it
    [found] = verify(tmp_path / "state")
    recorded = [(e.signer, e.round, e.privacy) for e in found.ledger.entries if e.kind == "update"]
    assert sorted((site, round, privacy["epsilon"]) for site, round, privacy in recorded) == spent
    assert all(privacy["delta"] == pytest.approx(1e-5) for _, _, privacy in recorded)
    aggregates = [e.privacy for e in found.ledger.entries if e.kind == "aggregate"]
    assert aggregates == [{"client_epsilon": value} for (value,) in server]
    assert len(server) == ROUNDS and 0 < server[0][0] < server[1][0] < float("inf")  # client-level DP
    report = (tmp_path / "state" / "report.html").read_text()
    assert "Privacy spent" in report and "client_epsilon" in report and "hospital_b" in report


def test_dp_sgd_under_secure_aggregation_sums_the_sites_that_still_have_budget(tmp_path: Path) -> None:
    privacy = {
        "epsilon": 50.0,
        "dp_sgd": {"noise": "fixed", "noise_multiplier": 1.0},
        "secure_aggregation": {"threshold_fraction": 0.5},
    }
    _, (_, _, group) = _run(tmp_path, privacy, client_extra={"hospital_c": ["--epsilon", "0.01"]})
    log = group.log("server")
    assert log.count("secure sum of ['hospital_a', 'hospital_b']") == ROUNDS, log
    assert "site 'hospital_c' declined" in log
