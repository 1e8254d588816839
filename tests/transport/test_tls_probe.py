"""A site tells why a TLS connection fails: server unreachable, server not trusted, or its own
certificate refused."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy_procs import free_port

from medfed.deployment.client import check_certificate
from medfed.provision import ProjectConfig, provision
from medfed.provision.certs import create_ca, issue, read_identity, write_identity
from medfed.transport.board import RoundBoard
from medfed.transport.errors import AuthenticationError
from medfed.transport.server import FederationServicer, start_server
from medfed.transport.tls import REFUSED_BY_SERVER, TlsFiles, probe_tls, server_credentials


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("probe")
    provision(ProjectConfig(name="t", server={"host": "localhost", "port": 1}, sites=["a"]), root / "kits")
    foreign = create_ca("intruder", days=5)
    write_identity(foreign, root / "foreign-ca.crt", root / "foreign-ca.key")
    write_identity(issue(foreign, "a", role="client", days=5), root / "foreign.crt", root / "foreign.key")
    project = read_identity(root / "kits" / "ca" / "ca.crt", root / "kits" / "ca" / "ca.key")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    write_identity(
        issue(project, "a", role="client", days=1, not_before=start),
        root / "expired.crt",
        root / "expired.key",
    )
    return root


@pytest.fixture(scope="module")
def target(kits: Path) -> Iterator[str]:
    server_kit = kits / "kits" / "server"
    tls = TlsFiles(server_kit / "server.crt", server_kit / "server.key", server_kit / "ca.crt")
    servicer = FederationServicer(RoundBoard(), sites=["a"], job_json="{}", authenticate=lambda pem: "a")
    server, port = start_server(servicer, address="127.0.0.1:0", credentials=server_credentials(tls))
    yield f"127.0.0.1:{port}"
    server.stop(grace=0).wait(5)


def _site(kits: Path, certificate: str = "kits/a/site", ca: str = "kits/a/ca.crt") -> TlsFiles:
    return TlsFiles(kits / f"{certificate}.crt", kits / f"{certificate}.key", kits / ca)


def test_each_cause_of_a_failed_handshake_is_named(kits: Path, target: str) -> None:
    assert "accepts this site's certificate" in probe_tls(target, _site(kits), server_name="localhost")
    assert probe_tls(target, _site(kits, "foreign"), server_name="localhost") == REFUSED_BY_SERVER
    assert probe_tls(target, _site(kits, "expired"), server_name="localhost") == REFUSED_BY_SERVER
    untrusted = probe_tls(target, _site(kits, ca="foreign-ca.crt"), server_name="localhost")
    assert "does not trust the server's certificate" in untrusted
    assert "'elsewhere' is not the server's name" in probe_tls(target, _site(kits), server_name="elsewhere")
    assert "server unreachable" in probe_tls(f"127.0.0.1:{free_port()}", _site(kits), server_name="localhost")


def test_a_sites_own_certificate_is_checked_against_its_kit(kits: Path) -> None:
    check_certificate(_site(kits))
    with pytest.raises(AuthenticationError, match="expired.crt is unusable .*expired"):
        check_certificate(_site(kits, "expired"))
    with pytest.raises(AuthenticationError, match="not issued by the project CA"):
        check_certificate(_site(kits, "foreign"))
