"""A site's own privacy policy holds in a real deployment: real processes, mutual TLS."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from deploy_procs import deploy, processes, site_state_dir, wait_all

from medfed.deployment.status import read_status
from medfed.orchestration.checkpoint import checkpoint_path, load_checkpoint
from medfed.orchestration.grid import Absence
from medfed.orchestration.metrics_log import Split

NO_DP_SGD = "site policy: job has no DP-SGD but this site requires it"
NO_SECURE_SUM = "site policy: job sends this site's update to the server in the clear"


@pytest.mark.integration
def test_sites_decline_a_plain_job_weaker_than_their_policy_and_send_the_server_nothing(
    tmp_path: Path,
) -> None:
    federation = deploy(
        tmp_path,
        {"hospital_a": 5, "hospital_b": 5, "hospital_c": 5},
        federation={"rounds": 1, "min_sites": 1},
    )
    kits, state = federation.kits, federation.state
    (kits / "hospital_b" / "site_policy.yaml").write_text("require_secure_aggregation: true\n")
    own_flags = {"hospital_c": ["--epsilon", "1.0"]}
    with processes(tmp_path / "logs") as group:
        wait_all(group, federation.start_all(group, own_flags), timeout=240)

    log = group.log("server")
    assert f"round 1: site 'hospital_c' declined: {NO_DP_SGD}" in log, log
    assert f"round 1: site 'hospital_b' declined: {NO_SECURE_SUM}" in log, log
    declined = read_status(state).declined  # what `medfed status` shows the operator
    assert declined.keys() == {"hospital_b", "hospital_c"} and NO_DP_SGD in declined["hospital_c"]
    assert load_checkpoint(checkpoint_path(state / "checkpoints", 1)).metadata["participants"] == "hospital_a"
    with sqlite3.connect(state / "metrics.sqlite") as db:  # neither an update nor a metric arrived
        scored = db.execute("SELECT DISTINCT site FROM metrics WHERE split != ?", (Split.PARTICIPATION,))
        assert {site for (site,) in scored} == {"hospital_a"}
        absences = db.execute("SELECT site, metric FROM metrics WHERE split = ?", (Split.PARTICIPATION,))
        assert sorted(absences) == [("hospital_b", Absence.DECLINED), ("hospital_c", Absence.DECLINED)]
    for site in ("hospital_b", "hospital_c"):
        assert "0 rounds trained here" in group.log(site)
    assert not (site_state_dir(kits, "hospital_c") / "privacy").exists()  # not even a DP ledger
