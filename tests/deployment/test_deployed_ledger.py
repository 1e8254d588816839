"""A deployed site's half of the provenance ledger, with keys from provisioning: it signs only
what it sent (its update, or in a protected round the digest of its messages), refuses forged
entries, and ``medfed revoke`` revokes its ledger key; the server digests what each site sent."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medfed.deployment.provenance import LedgerKeys, SiteLedger
from medfed.orchestration.grid import Reply
from medfed.orchestration.recording import DigestingGrid
from medfed.provenance import GENESIS, Entry, LedgerError, MessageDigest, load_signers, sign, weights_digest
from medfed.provenance.entries import entry_hash, entry_line
from medfed.provenance.signers import load_key
from medfed.provision import ProjectConfig, provision, revoke
from medfed.provision.revocation import revoked_serials
from medfed.types import TrainResult

SITES = ["hospital_a", "hospital_b"]


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kits")
    provision(ProjectConfig(name="t", server={"host": "localhost", "port": 1}, sites=SITES), folder)
    return folder


def _keys(kits: Path, party: str) -> LedgerKeys:
    return LedgerKeys(kits / party / "ledger.key", kits / party / "signers.json")


def _entry(result: TrainResult, **changes: object) -> Entry:
    entry = Entry(
        index=0,
        previous=GENESIS,
        kind="update",
        round=result.round,
        signer=result.site,
        digest=weights_digest(result.weights),
        num_samples=result.num_samples,
        metrics=dict(result.metrics),
    )
    return replace(entry, **changes)  # type: ignore[arg-type]


def test_provisioning_gives_every_party_a_ledger_key_and_the_signer_list(kits: Path) -> None:
    signers = load_signers(kits / "ca" / "signers.json")
    assert set(signers.known) == {"server", *SITES}
    for party in ["server", *SITES]:
        assert (kits / party / "ledger.key").stat().st_mode & 0o777 == 0o600
        assert (kits / party / "signers.json").read_bytes() == (kits / "ca" / "signers.json").read_bytes()
        issued = json.loads((kits / "ca" / "issued.json").read_text())[party]
        assert str(signers.known[party].serial) in issued


def test_a_site_signs_only_the_entry_that_states_what_it_sent(kits: Path, tmp_path: Path) -> None:
    site = SiteLedger("hospital_a", _keys(kits, "hospital_a"), tmp_path)
    result = TrainResult("hospital_a", 1, {"w": torch.ones(3)}, num_samples=5, metrics={"loss": 0.25})
    with pytest.raises(LedgerError, match="refusing to sign"):  # nothing sent yet
        site.sign(1, entry_line(_entry(result)))
    site.sent(result)
    for lie in (
        {"num_samples": 50},
        {"digest": "ab" * 32},
        {"metrics": {"loss": 0.1}},
        {"signer": "hospital_b"},
    ):
        with pytest.raises(LedgerError, match="refusing to sign"):
            site.sign(1, entry_line(_entry(result, **lie)))
    signature = site.sign(1, entry_line(_entry(result)))
    load_signers(kits / "ca" / "signers.json").check(replace(_entry(result), signature=signature.hex()))


def test_a_sites_copy_refuses_a_forged_entry_and_keeps_its_history(kits: Path, tmp_path: Path) -> None:
    site = SiteLedger("hospital_b", _keys(kits, "hospital_b"), tmp_path)
    honest = sign(
        _entry(TrainResult("hospital_a", 1, {"w": torch.ones(1)}, num_samples=2)),
        load_key(kits / "hospital_a" / "ledger.key"),
    )
    forged = sign(
        replace(honest, index=1, previous=entry_hash(honest), num_samples=99),
        load_key(kits / "server" / "ledger.key"),
    )
    assert json.loads(site.sync("job", entry_line(honest)))["length"] == 1
    with pytest.raises(LedgerError, match="bad signature: not signed by 'hospital_a'"):
        site.sync("job", entry_line(honest) + b"\n" + entry_line(forged))
    with pytest.raises(LedgerError, match="differs from this copy's"):
        site.sync("job", entry_line(replace(honest, num_samples=3)))
    assert len((tmp_path / "provenance" / "job" / "ledger.jsonl").read_bytes().splitlines()) == 1


def test_revoking_a_site_revokes_its_ledger_key(tmp_path: Path) -> None:
    provision(ProjectConfig(name="t", server={"host": "localhost", "port": 1}, sites=SITES), tmp_path)
    serial = load_signers(tmp_path / "ca" / "signers.json").known["hospital_b"].serial
    revoke(tmp_path, "hospital_b")
    assert serial in revoked_serials(tmp_path / "ca" / "crl.pem")


class _Party:
    """A site's half of a protected round that uploads and answers with fixed messages."""

    requests: dict[str, type] = {"unmask": bytes}

    def upload(self) -> object:
        return b"masked input"

    def answer(self, step: str, message: object) -> object:
        return b"shares for " + bytes(message)  # type: ignore[arg-type]


def test_in_a_protected_round_a_site_signs_only_the_digest_of_the_messages_it_sent(
    kits: Path, tmp_path: Path
) -> None:
    site = SiteLedger("hospital_a", _keys(kits, "hospital_a"), tmp_path)
    party = site.protocol(2, _Party())
    sent = MessageDigest()
    for message in (party.upload(), party.answer("unmask", b"round 2")):
        sent.add(message)
    entry = replace(
        _entry(TrainResult("hospital_a", 2, {}, num_samples=1)), num_samples=0, digest=sent.hexdigest()
    )
    received = MessageDigest()
    received.add(b"masked input")  # the server missed the reply: not what the site sent
    for lie in ({"digest": received.hexdigest()}, {"round": 1}, {"num_samples": 5}):
        with pytest.raises(LedgerError, match="refusing to sign"):
            site.sign(2, entry_line(replace(entry, **lie)))  # type: ignore[arg-type]
    signature = site.sign(2, entry_line(entry))
    load_signers(kits / "ca" / "signers.json").check(replace(entry, signature=signature.hex()))


def test_the_server_digests_what_it_accepted_from_each_site_in_the_latest_protected_round() -> None:
    class Inner:
        def train_protected(self, tasks: object, invitations: object, reply: Reply) -> dict[str, object]:
            return {"hospital_a": b"masked a", "hospital_b": b"masked b"}

        def step(self, round: int, step: str, messages: object, reply: Reply) -> dict[str, object]:
            return {"hospital_b": b"shares b"}  # hospital_a dropped out

    grid = DigestingGrid(Inner())  # type: ignore[arg-type]
    grid.train_protected({}, {}, Reply(bytes))
    grid.step(1, "unmask", {}, Reply(bytes))
    expected = {}
    for site, messages in {"hospital_a": [b"masked a"], "hospital_b": [b"masked b", b"shares b"]}.items():
        digest = MessageDigest()
        for message in messages:
            digest.add(message)
        expected[site] = digest.hexdigest()
    assert grid.take() == expected and grid.take() == {}


def test_a_dp_sites_entry_states_its_privacy_spent_apart_from_its_metrics(kits: Path, tmp_path: Path) -> None:
    site = SiteLedger("hospital_a", _keys(kits, "hospital_a"), tmp_path)
    spent = {"epsilon": 1.5, "delta": 1e-5}
    site.sent(
        TrainResult("hospital_a", 1, {"w": torch.ones(2)}, num_samples=1, metrics={"loss": 0.3, **spent})
    )
    entry = _entry(TrainResult("hospital_a", 1, {"w": torch.ones(2)}, num_samples=1, metrics={"loss": 0.3}))
    with pytest.raises(LedgerError, match="refusing to sign"):
        site.sign(1, entry_line(replace(entry, privacy={"epsilon": 0.5, "delta": 1e-5})))
    site.sign(1, entry_line(replace(entry, privacy=spent)))
