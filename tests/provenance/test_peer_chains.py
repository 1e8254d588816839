"""Networked peer-to-peer provenance: each peer's own chain, verified across the chains."""

from __future__ import annotations

from pathlib import Path

import pytest
from ledger_helpers import weights

from medfed.deployment.peer_ledger import PeerChain
from medfed.deployment.provenance import LedgerKeys
from medfed.orchestration.recording import run_keys
from medfed.provenance import LedgerError, append_signed
from medfed.provenance.chains import chain_path
from medfed.provenance.entries import draft
from medfed.provenance.verify import verify_chains
from medfed.topology.peers import Merge, PeerRound, PeerState
from medfed.types import TrainResult

PEERS = ["hospital_a", "hospital_b"]


def _keys(state_dir: Path, peer: str) -> LedgerKeys:
    provenance = state_dir / "provenance"
    return LedgerKeys(provenance / "keys" / f"{peer}.pem", provenance / "signers.json")


def _pull(site: str, trained: float, merged_from: tuple[float, ...] = ()) -> PeerRound:
    """A pull at ``site``: a merge of the models ``merged_from`` (if any), then a training."""
    state = PeerState.start(weights(0.0), PEERS)
    result = TrainResult(site, 1, weights(trained), num_samples=4, metrics={"loss": 0.5})
    merges = (
        [Merge(site, tuple(weights(v) for v in merged_from), weights(sum(merged_from)))]
        if merged_from
        else []
    )
    return PeerRound(state, [result], [], merges)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Both peers' chains in one state directory: round 1 each trains; round 2 hospital_a merges
    both trained models (the second PeerChain is hospital_a after a restart) and trains again."""
    run_keys(tmp_path, PEERS)
    folder = tmp_path / "provenance" / "p2p"
    PeerChain(folder, "hospital_a", _keys(tmp_path, "hospital_a")).record(_pull("hospital_a", 1.0), 1)
    PeerChain(folder, "hospital_b", _keys(tmp_path, "hospital_b")).record(_pull("hospital_b", 2.0), 1)
    restarted = PeerChain(folder, "hospital_a", _keys(tmp_path, "hospital_a"))
    assert len(restarted.chain) == 1
    restarted.record(_pull("hospital_a", 3.0, merged_from=(1.0, 2.0)), 2)
    return tmp_path


def test_each_peer_continues_its_own_chain_and_the_chains_verify_together(state_dir: Path) -> None:
    (found,) = verify_chains(state_dir)
    chain_a = found.chains["hospital_a"]
    assert [(e.index, e.round, e.kind) for e in chain_a.entries] == [
        (0, 1, "update"),
        (1, 2, "update"),
        (2, 2, "aggregate"),
    ]
    assert {e.signer for e in chain_a.entries} == {"hospital_a"}
    update_b = found.chains["hospital_b"].entries[0]
    assert chain_a.entries[2].inputs == (chain_a.entries[0].digest, update_b.digest)


def test_a_merge_citing_a_model_in_no_chain_is_named(state_dir: Path) -> None:
    chain_path(state_dir / "provenance" / "p2p", "hospital_b").unlink()
    with pytest.raises(
        LedgerError, match="entry 2: round 2 merge cites model .* in none of the 1 peer chains"
    ):
        verify_chains(state_dir)


def test_an_entry_signed_by_another_peer_is_refused_in_a_chain(tmp_path: Path) -> None:
    keys, _ = run_keys(tmp_path, PEERS)
    chain = PeerChain(tmp_path / "provenance" / "p2p", "hospital_a", _keys(tmp_path, "hospital_a")).chain
    with pytest.raises(LedgerError, match="signed by another party than 'hospital_a'"):
        append_signed(chain, draft("update", 1, "hospital_b", "0" * 64), keys["hospital_b"])
    assert not chain.path.exists()


def test_a_tampered_chain_is_refused(state_dir: Path) -> None:
    path = chain_path(state_dir / "provenance" / "p2p", "hospital_b")
    path.write_bytes(path.read_bytes().replace(b'"num_samples":4', b'"num_samples":40'))
    with pytest.raises(LedgerError, match="hospital_b's chain .* entry 0: bad signature"):
        verify_chains(state_dir)


def test_the_cli_verifies_and_shows_peer_chains(state_dir: Path) -> None:
    from typer.testing import CliRunner

    from medfed.cli.app import app

    verified = CliRunner().invoke(app, ["ledger", "verify", str(state_dir)])
    assert verified.exit_code == 0, verified.output
    assert "hospital_a (3 entries), hospital_b (1 entries); every merge's inputs" in verified.output
    shown = CliRunner().invoke(app, ["ledger", "show", str(state_dir)])
    assert shown.exit_code == 0 and "hospital_a's chain" in shown.output and "aggregate (2)" in shown.output
    chain_path(state_dir / "provenance" / "p2p", "hospital_b").unlink()
    refused = CliRunner().invoke(app, ["ledger", "verify", str(state_dir)])
    assert isinstance(refused.exception, LedgerError)  # main() prints it as one line, exit 2
    assert "in none of the 1 peer chains" in str(refused.exception)


def test_a_kit_whose_key_is_not_listed_under_its_name_is_refused_before_the_first_round(
    tmp_path: Path,
) -> None:
    run_keys(tmp_path, PEERS)
    keys = LedgerKeys(_keys(tmp_path, "hospital_b").key, _keys(tmp_path, "hospital_a").signers)
    with pytest.raises(LedgerError, match="does not list the kit's ledger key under 'hospital_a'"):
        PeerChain(tmp_path / "provenance" / "p2p", "hospital_a", keys)
