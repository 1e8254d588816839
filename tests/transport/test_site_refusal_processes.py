"""A site the server refuses at the TLS layer, or by revocation, stops with one line naming the
likely cause, after a bounded number of failures by default (real processes, mutual TLS)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest
from deploy_procs import deploy, processes, site_state_dir

from medfed.provision import ProjectConfig, provision, revoke
from medfed.provision.certs import issue, read_identity, write_identity

pytestmark = pytest.mark.integration


def _client(kit: Path, data: Path, port: int) -> list[str]:
    """A site's command with the default --max-failures (and short delays between tries)."""
    return [
        "client",
        "--kit",
        str(kit),
        "--data",
        str(data),
        "--server",
        f"127.0.0.1:{port}",
        "--max-backoff",
        "0.2",
        "--state-dir",
        str(site_state_dir(kit.parent, kit.name)),
    ]


def _expired_kit(kits: Path, site: str, into: Path) -> Path:
    shutil.copytree(kits / site, into)
    ca = read_identity(kits / "ca" / "ca.crt", kits / "ca" / "ca.key")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    write_identity(
        issue(ca, site, role="client", days=1, not_before=start), into / "site.crt", into / "site.key"
    )
    return into


def test_refused_sites_stop_with_the_likely_cause(tmp_path: Path) -> None:
    federation = deploy(tmp_path, {"hospital_a": 4, "hospital_b": 4}, sites=["hospital_a", "hospital_b"])
    kits, port, data = federation.kits, federation.port, federation.data
    other = tmp_path / "other"
    provision(
        ProjectConfig(name="other", server={"host": "localhost", "port": port}, sites=["hospital_a"]), other
    )
    revoke(kits, "hospital_b")
    with processes(tmp_path / "logs") as group:
        federation.start_server(group, listening=True)
        sites = {
            "expired": _client(
                _expired_kit(kits, "hospital_a", tmp_path / "expired" / "hospital_a"),
                data["hospital_a"],
                port,
            ),
            "other_project": _client(other / "hospital_a", data["hospital_a"], port),
            "revoked": _client(kits / "hospital_b", data["hospital_b"], port),
        }
        clients = {name: group.start(name, *args) for name, args in sites.items()}
        codes = {name: client.wait(timeout=120) for name, client in clients.items()}
    said = {name: " ".join(group.log(name).split()) for name in sites}
    assert codes == {"expired": 2, "other_project": 2, "revoked": 2}, said
    assert "expired or not yet valid" in said["expired"] and "new startup kit" in said["expired"]
    assert (
        "giving up after 10 failed calls in a row: this site does not trust the server's certificate"
        in said["other_project"]
    )
    assert "revoked" in said["revoked"]
