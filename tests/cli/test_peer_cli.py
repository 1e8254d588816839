"""``medfed peer``'s mistakes end as one ``error:`` line, before anything starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from medfed.cli.app import main
from medfed.provision import ProjectConfig, provision


def _peer(tmp_path: Path, job: dict, peers: dict, monkeypatch: pytest.MonkeyPatch) -> int:
    provision(ProjectConfig(name="t", sites=["hospital_a", "hospital_b"]), tmp_path / "kits")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    (tmp_path / "peers.yaml").write_text(yaml.safe_dump(peers))
    args = ["--kit", str(tmp_path / "kits" / "hospital_a"), "--job", str(tmp_path / "job.yaml")]
    args += ["--peers", str(tmp_path / "peers.yaml"), "--data", str(tmp_path / "missing")]
    monkeypatch.setattr(sys, "argv", ["medfed", "peer", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0)


@pytest.mark.parametrize(
    ("job", "peers", "message"),
    [
        (
            {"federation": {"topology": "client_server"}},
            {"hospital_a": "h:1", "hospital_b": "h:2"},
            "runs ['braintorrent', 'cyclic', 'gossip']",
        ),
        (
            {"federation": {"topology": {"name": "gossip", "graph": "random_regular", "degree": 2}}},
            {"hospital_a": "h:1", "hospital_b": "h:2"},
            "federation.topology: no 2-regular graph on 2 sites",
        ),
        ({}, {"hospital_b": "h:2", "hospital_c": "h:3"}, "site 'hospital_a' (the kit's) is not in"),
        ({}, {"hospital_a": "h", "hospital_b": "h:2"}, "has address 'h', expected host:port"),
    ],
)
def test_a_bad_peer_setup_is_one_error_line(
    tmp_path: Path,
    job: dict,
    peers: dict,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _peer(tmp_path, job, peers, monkeypatch) == 2
    output = " ".join("".join(capsys.readouterr()).split())
    assert message in output and "Traceback" not in output
