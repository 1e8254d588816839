"""Provisioning: kits, key modes, re-runs that keep certificates valid, revocation."""

from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import numpy as np
import pytest
import tenseal as ts

from medfed.privacy.ckks import EncryptionError, load_server_context, load_site_context
from medfed.provision import (
    CertificateGate,
    ProjectConfig,
    load_client_kit,
    load_project,
    load_server_kit,
    provision,
    revoke,
)
from medfed.provision.certs import certificate_pem, create_ca, issue, read_identity
from medfed.provision.errors import ProvisionError
from medfed.provision.revocation import revoked_serials
from medfed.transport.errors import AuthenticationError


def _project(*sites: str, encryption: str | None = None) -> ProjectConfig:
    server = {"host": "fl.example.org", "port": 9443}
    return ProjectConfig(name="t", server=server, sites=list(sites), encryption=encryption)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _gate(kits: Path) -> CertificateGate:
    return CertificateGate(kits / "server" / "ca.crt", kits / "server" / "crl.pem")


def test_kits_are_complete_and_keys_private(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    report = provision(_project("hospital_a", "hospital_b"), kits)
    assert report.created == ["ca", "server", "hospital_a", "hospital_b"]
    for key in [
        kits / "ca/ca.key",
        kits / "server/server.key",
        kits / "hospital_a/site.key",
        kits / "hospital_b/site.key",
    ]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    site = load_client_kit(kits / "hospital_a")
    assert (site.site, site.server, site.server_name) == (
        "hospital_a",
        "fl.example.org:9443",
        "fl.example.org",
    )
    server = load_server_kit(kits / "server")
    assert server.port == 9443 and server.sites == ["hospital_a", "hospital_b"]
    assert _gate(kits)((kits / "hospital_a/site.crt").read_bytes()) == "hospital_a"


def test_rerun_adds_sites_and_keeps_existing_certificates(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a"), kits)
    before = {path: path.read_bytes() for path in kits.rglob("*.crt")}
    report = provision(_project("hospital_a", "hospital_c"), kits)
    assert report.created == ["hospital_c"] and report.kept == ["ca", "server", "hospital_a"]
    assert all(path.read_bytes() == data for path, data in before.items())
    gate = _gate(kits)
    assert gate((kits / "hospital_a/site.crt").read_bytes()) == "hospital_a"
    assert gate((kits / "hospital_c/site.crt").read_bytes()) == "hospital_c"
    assert load_server_kit(kits / "server").sites == ["hospital_a", "hospital_c"]


def test_revoked_certificate_is_refused_and_others_still_pass(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a", "hospital_b"), kits)
    gate = _gate(kits)
    certificate = (kits / "hospital_a/site.crt").read_bytes()
    assert gate(certificate) == "hospital_a"
    serials = revoke(kits, "hospital_a")
    assert serials == revoked_serials(kits / "server/crl.pem")
    assert serials == revoked_serials(kits / "hospital_b/crl.pem")  # peers check each other too
    with pytest.raises(AuthenticationError, match="revoked"):
        gate(certificate)
    assert gate((kits / "hospital_b/site.crt").read_bytes()) == "hospital_b"
    # A re-issued kit (folder deleted, provision re-run) gets a fresh, valid certificate.
    for path in (kits / "hospital_a").iterdir():
        path.unlink()
    provision(_project("hospital_a", "hospital_b"), kits)
    assert gate((kits / "hospital_a/site.crt").read_bytes()) == "hospital_a"
    with pytest.raises(ProvisionError, match="no certificate"):
        revoke(kits, "nobody")


def test_foreign_and_expired_certificates_are_refused(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a"), kits)
    gate = _gate(kits)
    foreign = issue(create_ca("other", days=5), "hospital_a", role="client", days=5)
    with pytest.raises(AuthenticationError, match="not issued"):
        gate(certificate_pem(foreign.certificate))
    ca = read_identity(kits / "ca/ca.crt", kits / "ca/ca.key")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    expired = issue(ca, "hospital_a", role="client", days=1, not_before=old)
    with pytest.raises(AuthenticationError, match="expired"):
        gate(certificate_pem(expired.certificate))
    with pytest.raises(AuthenticationError):
        gate(b"not a certificate")


def test_unreadable_crl_refuses_everyone(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a"), kits)
    gate = _gate(kits)
    (kits / "server/crl.pem").write_text("garbage")
    with pytest.raises(AuthenticationError, match="revocation list"):
        gate((kits / "hospital_a/site.crt").read_bytes())


def test_project_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "project.yaml"
    path.write_text("sites: [hospital_a, server]\n")
    with pytest.raises(ProvisionError, match="server"):
        load_project(path)
    path.write_text("name: x\nserver: {host: h, port: 1}\nsites: [a, b]\n")
    assert load_project(path).sites == ["a", "b"]
    path.write_text("sites: [a]\nencryption: paillier\n")
    with pytest.raises(ProvisionError, match="encryption"):
        load_project(path)
    path.write_text("sites: [a]\nencryption: ckks\n")
    assert load_project(path).encryption == "ckks"
    with pytest.raises(ProvisionError, match="cannot read kit file"):
        load_client_kit(tmp_path)


def test_no_ckks_files_without_encryption(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    report = provision(_project("hospital_a"), kits)
    assert report.ckks is None and not list(kits.rglob("*.ctx"))
    assert load_server_kit(kits / "server").ckks_context is None
    assert load_client_kit(kits / "hospital_a").ckks_context is None


def test_ckks_contexts_shared_by_sites_and_keyless_at_the_server(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    report = provision(_project("hospital_a", "hospital_b", encryption="ckks"), kits)
    assert report.ckks == "created" and report.created == ["ca", "server", "hospital_a", "hospital_b"]
    server_file = load_server_kit(kits / "server").ckks_context
    site_files = [load_client_kit(kits / site).ckks_context for site in ("hospital_a", "hospital_b")]
    assert server_file == kits / "server/ckks_public.ctx" and _mode(server_file) == 0o644
    assert site_files == [kits / "hospital_a/ckks.ctx", kits / "hospital_b/ckks.ctx"]
    assert all(_mode(path) == 0o600 for path in [kits / "ca/ckks.ctx", *site_files])
    site_a, site_b = (load_site_context(path) for path in site_files)
    server = load_server_context(server_file)
    assert site_a.is_private() and site_b.is_private() and not server.is_private()
    encrypted = [
        ts.ckks_vector(site_a, [1.0, 2.0]).serialize(),
        ts.ckks_vector(site_b, [0.5, -1.0]).serialize(),
    ]
    total = ts.ckks_vector_from(server, encrypted[0]) + ts.ckks_vector_from(server, encrypted[1])
    np.testing.assert_allclose(
        ts.ckks_vector_from(site_b, total.serialize()).decrypt(), [1.5, 1.0], atol=1e-4
    )
    np.testing.assert_allclose(ts.ckks_vector_from(site_a, encrypted[1]).decrypt(), [0.5, -1.0], atol=1e-4)


def test_rerun_with_a_new_site_keeps_the_ckks_key(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a", encryption="ckks"), kits)
    master = (kits / "ca/ckks.ctx").read_bytes()
    report = provision(_project("hospital_a", "hospital_c", encryption="ckks"), kits)
    assert report.ckks == "kept" and (kits / "ca/ckks.ctx").read_bytes() == master
    assert (
        (kits / "hospital_a/ckks.ctx").read_bytes() == (kits / "hospital_c/ckks.ctx").read_bytes() == master
    )
    old_site, new_site = (
        load_site_context(kits / "hospital_a/ckks.ctx"),
        load_site_context(kits / "hospital_c/ckks.ctx"),
    )
    encrypted = ts.ckks_vector(old_site, [3.0]).serialize()
    np.testing.assert_allclose(ts.ckks_vector_from(new_site, encrypted).decrypt(), [3.0], atol=1e-4)


def test_lost_master_context_is_not_silently_replaced(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a", encryption="ckks"), kits)
    (kits / "ca/ckks.ctx").unlink()
    with pytest.raises(ProvisionError, match="master copy"):
        provision(_project("hospital_a", encryption="ckks"), kits)


def test_kit_contexts_are_refused_by_the_wrong_party(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    provision(_project("hospital_a", encryption="ckks"), kits)
    site_file, server_file = kits / "hospital_a/ckks.ctx", kits / "server/ckks_public.ctx"
    with pytest.raises(EncryptionError, match=re.escape(f"'{server_file}' lacks the secret key")):
        load_site_context(server_file)
    with pytest.raises(EncryptionError, match=re.escape(f"'{site_file}' holds the secret key")):
        load_server_context(site_file)


def test_site_certificate_serves_its_peers_under_its_own_name_only(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    provision(_project("hospital_a"), tmp_path)
    certificate = x509.load_pem_x509_certificate((tmp_path / "hospital_a" / "site.crt").read_bytes())
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(names) == [x509.DNSName("hospital_a")]


@pytest.mark.parametrize("site", ["fl.example.org", "LOCALHOST", "127.0.0.1"])
def test_a_site_cannot_be_named_as_the_server_host(site: str) -> None:
    with pytest.raises(ValueError, match="server's host"):
        _project("hospital_a", site)
