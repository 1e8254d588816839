"""The job and peers file of ``medfed peer``: what runs over the network, and what is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from medfed.deployment.job import read_job
from medfed.deployment.peer_job import PeerJob, load_peers
from medfed.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "peer-to-peer.md"


def _doc_block(first_line: str) -> str:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    return next(block for block in blocks if block.startswith(first_line))


def test_the_documented_job_and_peers_file_load(tmp_path: Path) -> None:
    (tmp_path / "p2p.yaml").write_text(_doc_block("# p2p.yaml"))
    (tmp_path / "peers.yaml").write_text(_doc_block("# peers.yaml"))
    job = read_job(tmp_path / "p2p.yaml", [], PeerJob)
    assert (job.federation.topology.name, job.strategy.name, job.finish_timeout_s) == (
        "braintorrent",
        "fedprox",
        600,
    )
    assert load_peers(tmp_path / "peers.yaml")["hospital_b"] == "fl.hospital-b.org:9443"


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        ({"federation": {"topology": "client_server"}}, "runs \\['braintorrent', 'cyclic', 'gossip'\\]"),
        ({"federation": {"topology": {"name": "braintorrent", "pulls_per_round": 2}}}, "pulls_per_round"),
        ({"strategy": {"name": "scaffold"}}, "runs only strategies"),
        ({"privacy": {"secure_aggregation": {}}}, "no server for privacy"),
        ({"federation": {"topology": "braintorrent", "fraction": 0.5}}, "fraction"),
        ({"call_timeout_s": 0}, "call_timeout_s"),
    ],
)
def test_what_needs_a_server_or_another_topology_is_refused(tmp_path: Path, settings: dict, why: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(settings))
    with pytest.raises(ConfigError, match=why):
        read_job(path, [], PeerJob)


def test_the_default_peer_job_is_braintorrent() -> None:
    assert PeerJob().federation.topology.name == "braintorrent"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("hospital_a: 127.0.0.1:9000\n", "at least two"),
        ("hospital_a: 127.0.0.1:9000\nhospital_b: 127.0.0.1\n", "expected host:port"),
        ("hospital_a: 127.0.0.1:9000\nhospital_b: 127.0.0.1:70000\n", "expected host:port"),
        ("hospital_a: 127.0.0.1:9000\n'bad name': 127.0.0.1:9001\n", "not a site name"),
        ("[hospital_a, hospital_b]\n", "at least two"),
        ("{unclosed\n", "peers file"),
    ],
)
def test_a_bad_peers_file_is_one_config_error(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "peers.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_peers(path)
