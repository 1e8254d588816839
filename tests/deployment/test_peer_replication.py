"""Networked peers replicate each other's provenance chains over ``FetchChain``: served and
fetched over real mutual TLS in this process, every page checked before it is appended."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import torch
from peer_kits import kit_signer, peer_channel, peer_links, serving_peer
from typer.testing import CliRunner

from medfed.cli.app import app
from medfed.deployment.peer import _final_models
from medfed.deployment.peer_replication import ChainCopies
from medfed.deployment.provenance import LedgerKeys, keep_signers, ledger_folder
from medfed.provenance import Ledger, LedgerError, append_signed, sign, weights_digest
from medfed.provenance.chains import chain_path
from medfed.provenance.entries import draft, entry_line
from medfed.provenance.signers import load_key
from medfed.provenance.verify import verify_chains
from medfed.provision import ProjectConfig, load_client_kit, provision, revoke
from medfed.transport.errors import AuthenticationError
from medfed.transport.payload import encode_result
from medfed.transport.peer import (
    NONCE_BYTES,
    ChainRequest,
    ModelShelf,
    PeerChannel,
    PublishedModel,
)
from medfed.types import TrainResult

A, B, C = SITES = ["hospital_a", "hospital_b", "hospital_c"]
JOB = "p2p"


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kits = tmp_path_factory.mktemp("chains") / "kits"
    provision(ProjectConfig(name="t", sites=SITES), kits)
    return kits


def _keys(kits: Path, site: str) -> LedgerKeys:
    kit = load_client_kit(kits / site)
    assert kit.ledger_key and kit.signers and kit.crl
    return LedgerKeys(kit.ledger_key, kit.signers, kit.crl)


def _copies(kits: Path, states: Path, site: str, **limits: int) -> ChainCopies:
    others = [peer for peer in SITES if peer != site]
    return ChainCopies(ledger_folder(states / site, JOB), JOB, site, _keys(kits, site), others, **limits)


def _own_chain(kits: Path, states: Path, site: str) -> Ledger:
    signers = _keys(kits, site).load()[1]
    return Ledger(chain_path(ledger_folder(states / site, JOB), site), signers, owner=site)


def _record(kits: Path, states: Path, site: str, round: int, *, merged: tuple[str, ...] = ()) -> str:
    """Appends ``site``'s update of ``round`` (and, with ``merged``, its merge of those models
    first) to its own chain; returns the update's digest."""
    chain, key = _own_chain(kits, states, site), load_key(_keys(kits, site).key)
    if merged:
        append_signed(chain, draft("aggregate", round, site, "e" * 64, inputs=merged), key)
    digest = os.urandom(32).hex()
    append_signed(chain, draft("update", round, site, digest, num_samples=4), key)
    return digest


@contextmanager
def _serving(
    kits: Path,
    site: str,
    copies: ChainCopies | None,
    *,
    tamper: Callable[[bytes], bytes] = bytes,
    shelf: ModelShelf | None = None,
) -> Iterator[str]:
    """``site`` serving its chains (and ``shelf``) on a free loopback port, signing
    ``tamper(what it should sign)``; yields its address."""
    others = [peer for peer in SITES if peer != site]
    chains = copies.serve if copies is not None else None
    sign = kit_signer(kits, site, tamper)
    with serving_peer(kits, site, shelf or ModelShelf(), peers=others, sign=sign, chains=chains) as address:
        yield address


def _channels(kits: Path, site: str, addresses: dict[str, str]) -> dict[str, PeerChannel]:
    return {peer: peer_channel(kits, address, peer=peer, site=site) for peer, address in addresses.items()}


@contextmanager
def _federation(kits: Path, states: Path, *serving: str, caller: str = A) -> Iterator[dict[str, PeerChannel]]:
    """``serving`` sites serving their chains; yields ``caller``'s channels to them."""
    with ExitStack() as stack:
        addresses = {
            site: stack.enter_context(_serving(kits, site, _copies(kits, states, site))) for site in serving
        }
        channels = _channels(kits, caller, addresses)
        yield channels
        for channel in channels.values():
            channel.close()


@pytest.fixture
def states(kits: Path, tmp_path: Path) -> Path:
    """Round 1: each site trains; round 2: hospital_a merges hospital_b's and hospital_c's models."""
    states = tmp_path / "states"
    for site in SITES:
        keep_signers(states / site, _keys(kits, site))
    updates = [_record(kits, states, site, 1) for site in SITES]
    _record(kits, states, A, 2, merged=tuple(updates))
    return states


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_peer_state_verifies_on_its_own_once_it_copied_its_peers_chains(kits: Path, states: Path) -> None:
    with pytest.raises(LedgerError, match="merge cites model .* in none of the 1 peer chains"):
        verify_chains(states / A)
    copies = _copies(kits, states, A)
    with _federation(kits, states, B, C) as channels:
        copies.update(channels)
    (found,) = verify_chains(states / A)
    assert {site: len(chain) for site, chain in found.chains.items()} == {A: 3, B: 1, C: 1}
    verified = CliRunner().invoke(app, ["ledger", "verify", str(states / A)])
    assert verified.exit_code == 0 and "every merge's inputs are recorded" in verified.output, verified.output
    copy = chain_path(ledger_folder(states / A, JOB), B)
    copy.write_bytes(copy.read_bytes().replace(b'"num_samples":4', b'"num_samples":40'))
    with pytest.raises(LedgerError, match="hospital_b's chain .* entry 0: bad signature"):
        verify_chains(states / A)


@pytest.mark.parametrize("known_offline", [False, True])
def test_an_owner_out_of_reach_is_copied_from_a_peer_that_holds_a_copy(
    kits: Path, states: Path, caplog: pytest.LogCaptureFixture, known_offline: bool
) -> None:
    with _federation(kits, states, C, caller=B) as channels:
        _copies(kits, states, B).update(channels)
    _record(kits, states, C, 2)
    copies = _copies(kits, states, A)
    with _federation(kits, states, B) as channels, caplog.at_level(logging.INFO, "medfed"):
        offline = {C} if known_offline else set()
        copies.update({**channels, **_channels(kits, A, {C: "127.0.0.1:1"})}, offline=offline)
    assert len(copies.copies[C]) == 1  # hospital_b's copy, without hospital_c's round 2 yet
    verify_chains(states / A)
    asked_c = any("not fetched from hospital_c" in record.getMessage() for record in caplog.records)
    assert asked_c is not known_offline  # a peer known to be offline is not called


def test_a_site_knows_which_peers_were_not_sent_all_of_its_chain(kits: Path, states: Path) -> None:
    served, copies = _copies(kits, states, A), _copies(kits, states, B)
    with _serving(kits, A, served) as address:
        channels = _channels(kits, B, {A: address})
        assert served.behind() == set()  # nobody replicates it yet
        copies.update(channels)  # hospital_a's merge cites hospital_c's update, not copied here
        assert served.behind() == set() and len(copies.copies[A]) == 3 and not copies.copies[C].entries
        _record(kits, states, A, 3)
        assert served.behind() == {B}
        copies.update(channels)
        assert served.behind() == set() and len(copies.copies[A]) == 4


def test_a_forged_entry_is_refused_over_the_wire_and_the_copy_left_untouched(
    kits: Path, states: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copies = _copies(kits, states, A)
    with _federation(kits, states, B) as channels:
        copies.update(channels)
        before = copies.copies[B].path.read_bytes()
        chain = _own_chain(kits, states, B)  # hospital_b serves an entry hospital_c signed
        entry = replace(draft("update", 2, C, "c" * 64), index=1, previous=chain.head())
        forged = sign(entry, load_key(_keys(kits, C).key))
        with chain.path.open("ab") as file:
            file.write(entry_line(forged) + b"\n")
        with caplog.at_level(logging.INFO, "medfed"):
            copies.update(channels)
            copies.update(channels)
    assert copies.copies[B].path.read_bytes() == before
    (line,) = _warnings(caplog)  # one line, although asked twice
    assert "hospital_b's chain from hospital_b refused" in line and "signed by another party" in line


def test_a_forked_chain_is_reported_as_divergence_once_and_the_copy_kept(
    kits: Path, states: Path, caplog: pytest.LogCaptureFixture
) -> None:
    copies = _copies(kits, states, A)
    _record(kits, states, B, 2)
    with _federation(kits, states, B) as channels:
        copies.update(channels)
        before = copies.copies[B].path.read_bytes()
        chain_path(ledger_folder(states / B, JOB), B).unlink()  # hospital_b rewrites its history
        _record(kits, states, B, 1)
        _record(kits, states, B, 2)
        _record(kits, states, B, 3)
        with caplog.at_level(logging.INFO, "medfed"):
            copies.update(channels)
            copies.update(channels)
    assert copies.copies[B].path.read_bytes() == before
    (line,) = _warnings(caplog)
    assert "diverged" in line and "'hospital_b' signed two different entries 1" in line, line


def test_a_model_may_be_merged_only_while_its_owner_s_chain_records_it_as_an_update(
    kits: Path, states: Path
) -> None:
    trained = _record(kits, states, B, 2)
    copies = _copies(kits, states, A)
    with _federation(kits, states, A, B, caller=C) as channels:
        c_copies = _copies(kits, states, C)
        assert c_copies.unrecorded(B, trained, channels[B]) is None  # fetched when asked
        assert len(c_copies.copies[B]) == 2
        unknown = c_copies.unrecorded(B, os.urandom(32).hex(), channels[B])
        assert unknown == "its provenance chain does not record this model as its update"
        merged = c_copies.unrecorded(A, "e" * 64, channels[A])  # hospital_a's merge output, no update
        assert merged == "its provenance chain does not record this model as its update"
        assert c_copies.unrecorded(A, "e" * 64, channels[A], final=True) is None  # e.g. gossip's last mix
    with _federation(kits, states, B) as channels:
        assert copies.unrecorded(B, trained, channels[B]) is None
        chain_path(ledger_folder(states / B, JOB), B).unlink()  # hospital_b rewrites its history
        rewritten = [_record(kits, states, B, round) for round in (1, 2, 3)]
        for digest in (rewritten[-1], trained):  # nothing of a forked peer is merged again
            assert copies.unrecorded(B, digest, channels[B]) == "its provenance chain diverged"
    copy = chain_path(ledger_folder(states / A, JOB), B)
    copy.write_bytes(copy.read_bytes().replace(b'"round":1', b'"round":7'))  # edited on disk here
    with _federation(kits, states, B) as channels:
        edited = _copies(kits, states, A).unrecorded(B, trained, channels[B])
    assert edited == "its provenance chain is not replicated here"


def test_links_return_a_peer_s_model_only_once_its_chain_records_it(
    kits: Path, states: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    shelf = ModelShelf()
    shelf.publish(
        PublishedModel(2, encode_result(TrainResult(site=B, round=2, weights=weights, num_samples=4)))
    )
    with (
        _serving(kits, B, _copies(kits, states, B), shelf=shelf) as address,
        caplog.at_level(logging.WARNING, "medfed"),
    ):
        links = peer_links(kits, A, {B: address}, copies=_copies(kits, states, A))
        assert links.fetch(B, weights, newer_than=1) is None  # served, but not in its chain
        assert links.fetch(B, weights, newer_than=1) is None
        chain, key = _own_chain(kits, states, B), load_key(_keys(kits, B).key)
        append_signed(chain, draft("update", 2, B, weights_digest(weights), num_samples=4), key)
        fetched = links.fetch(B, weights, newer_than=1)
        links.close()
    assert fetched is not None and fetched.round == 2
    (line,) = _warnings(caplog)  # one line, although refused twice
    assert "peer 'hospital_b' skipped: its model of version 2 is not merged" in line
    assert "does not record this model" in line


def test_the_final_models_are_not_waited_for_from_a_peer_whose_chain_diverged(
    kits: Path, states: Path
) -> None:
    weights = {"w": torch.zeros(2, 3)}
    own = TrainResult(site=A, round=2, weights=weights, num_samples=4)
    copies = _copies(kits, states, A)
    with _serving(kits, B, _copies(kits, states, B)) as address:  # serves no final model
        links = peer_links(kits, A, {B: address}, copies=copies)
        copies.diverged.add(B)
        start = time.monotonic()
        finals = _final_models(own, links, timeout_s=60, poll_s=0.1)
        links.close()
    assert finals == {A: own} and time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("limits", "why"), [({"max_entries": 1}, "2 entries"), ({"max_bytes": 100}, "bytes")]
)
def test_an_oversize_answer_is_refused(
    kits: Path, states: Path, caplog: pytest.LogCaptureFixture, limits: dict[str, int], why: str
) -> None:
    _record(kits, states, B, 2)
    copies = _copies(kits, states, A, **limits)
    with _federation(kits, states, B) as channels, caplog.at_level(logging.INFO, "medfed"):
        copies.update(channels)  # hospital_b answers with pages of up to 1000 entries, 4 MiB
    assert len(copies.copies[B]) == 0
    (line,) = _warnings(caplog)
    assert "refused: a chain answer of" in line and why in line, line


@pytest.mark.parametrize(
    ("job", "owner", "nonce", "code"),
    [
        ("other", B, NONCE_BYTES, grpc.StatusCode.NOT_FOUND),
        (JOB, "../../etc", NONCE_BYTES, grpc.StatusCode.NOT_FOUND),
        (JOB, B, 3, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_a_request_for_a_chain_not_served_is_refused(
    kits: Path, states: Path, job: str, owner: str, nonce: int, code: grpc.StatusCode
) -> None:
    with _federation(kits, states, B) as channels:
        with pytest.raises(grpc.RpcError) as refused:
            channels[B].fetch_chain(ChainRequest(os.urandom(nonce), job, owner, 0))
    assert refused.value.code() is code


@pytest.mark.parametrize("during_the_run", [False, True])
def test_entries_of_a_revoked_signer_are_refused_even_when_another_peer_relays_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, during_the_run: bool
) -> None:
    kits, states = tmp_path / "kits", tmp_path / "states"
    provision(ProjectConfig(name="t", sites=SITES), kits)
    for site in SITES:
        keep_signers(states / site, _keys(kits, site))
    trained = _record(kits, states, B, 1)
    with _federation(kits, states, B, caller=C) as channels:
        _copies(kits, states, C).update(channels)
    copies = _copies(kits, states, A) if during_the_run else None  # read the list before it changed
    revoke(kits, B)  # its certificate and its ledger key; every kit's crl.pem is refreshed
    copies = copies or _copies(kits, states, A)
    with _federation(kits, states, C) as channels, caplog.at_level(logging.INFO, "medfed"):
        copies.update(channels)  # hospital_b is not called: hospital_c relays its copy
        refused = copies.unrecorded(B, trained, channels[C])
    assert not copies.copies[B].entries
    assert refused == "its provenance chain does not record this model as its update"
    assert any("refused" in line and "signer 'hospital_b' is revoked" in line for line in _warnings(caplog))


def test_a_chain_answer_signed_over_other_bytes_or_absent_is_refused(kits: Path, states: Path) -> None:
    def lie(data: bytes) -> bytes:
        return data.replace(b'"length": 1', b'"length": 9')

    request = ChainRequest(os.urandom(NONCE_BYTES), JOB, B, 0)
    with _serving(kits, B, _copies(kits, states, B), tamper=lie) as address:
        (channel,) = _channels(kits, A, {B: address}).values()
        with pytest.raises(AuthenticationError, match="signature"):
            channel.fetch_chain(request)
    with _serving(kits, B, None) as address:  # a site that keeps no chains
        (channel,) = _channels(kits, A, {B: address}).values()
        with pytest.raises(grpc.RpcError) as refused:
            channel.fetch_chain(request)
    assert refused.value.code() is grpc.StatusCode.NOT_FOUND


def test_a_copy_edited_on_disk_is_named_at_start_and_no_longer_replicated(
    kits: Path, states: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _federation(kits, states, B) as channels:
        _copies(kits, states, A).update(channels)
    copy = chain_path(ledger_folder(states / A, JOB), B)
    copy.write_bytes(copy.read_bytes().replace(b'"round":1', b'"round":7'))
    with caplog.at_level(logging.WARNING, "medfed"):
        copies = _copies(kits, states, A)
    assert B not in copies.copies and C in copies.copies
    (line,) = _warnings(caplog)
    assert "copy of hospital_b's chain" in line and "bad signature" in line and "no longer replicated" in line
