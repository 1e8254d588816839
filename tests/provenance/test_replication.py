"""Every copy checks an entry before appending it: a site's forgery is refused by the others,
and the recorder digests what each site actually sent in a protected round."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from ledger_helpers import SITES, Recorded, weights

from medfed.orchestration.recording import SERVER, LedgerRecorder, run_keys
from medfed.provenance import Entry, Ledger, LedgerError, MessageDigest, divergence, replicate, sign
from medfed.provenance.verify import verify
from medfed.types import AGGREGATE_SITE, AGGREGATE_SITES_METRIC, ServerState, TrainResult, TrainTask


def _copies(recorded: Recorded) -> dict[str, Ledger]:
    folder = recorded.ledger.parent
    copies = {site: Ledger(folder / "sites" / f"{site}.jsonl", recorded.signers) for site in SITES}
    return {"server": Ledger(recorded.ledger, recorded.signers), **copies}


def _next(ledger: Ledger, **fields: object) -> Entry:
    base = {"kind": "update", "round": 3, "signer": "hospital_b", "digest": "ab" * 32, "num_samples": 5}
    entry = Entry(index=len(ledger), previous=ledger.head(), **{**base, **fields})  # type: ignore[arg-type]
    return entry


def test_a_sites_forged_entry_is_refused_by_every_other_copy(recorded: Recorded) -> None:
    copies = _copies(recorded)
    before = {name: copy.path.read_bytes() for name, copy in copies.items()}
    # hospital_b writes an entry in hospital_a's name, signed with its own key
    forged = sign(
        _next(copies["server"], signer="hospital_a", num_samples=10_000), recorded.keys["hospital_b"]
    )
    for name in ("server", "hospital_a"):
        with pytest.raises(LedgerError, match="bad signature: not signed by 'hospital_a'"):
            copies[name].append(forged)
        assert copies[name].path.read_bytes() == before[name] and len(copies[name]) == 6


def test_an_entry_off_the_chain_or_citing_unknown_inputs_is_refused(recorded: Recorded) -> None:
    ledger = _copies(recorded)["hospital_a"]
    stale = sign(replace(_next(ledger), previous="00" * 32), recorded.keys["hospital_b"])
    with pytest.raises(LedgerError, match="does not link to the entry before it"):
        ledger.append(stale)
    invented = _next(ledger, kind="aggregate", signer=SERVER, num_samples=0, inputs=("cd" * 32,))
    with pytest.raises(LedgerError, match="is not an update in this ledger"):
        ledger.append(sign(invented, recorded.keys[SERVER]))
    citing = _next(ledger, inputs=(ledger.entries[0].digest,))
    with pytest.raises(LedgerError, match="an update cites inputs"):
        ledger.append(sign(citing, recorded.keys["hospital_b"]))
    assert len(ledger) == 6


def test_copies_that_forked_are_reported_and_not_merged(recorded: Recorded, tmp_path: Path) -> None:
    copies = _copies(recorded)
    honest = sign(_next(copies["server"]), recorded.keys["hospital_b"])
    other = sign(_next(copies["hospital_a"], digest="ef" * 32), recorded.keys["hospital_b"])
    copies["server"].append(honest)
    copies["hospital_a"].append(other)  # hospital_b told hospital_a another story
    lines = divergence(
        copies["server"], {"hospital_a": copies["hospital_a"], "hospital_b": copies["hospital_b"]}
    )
    assert lines[0].startswith("'hospital_a' (7 entries") and "differs from entry 6 on" in lines[0]
    assert "lacks entries 6-6" in lines[1]
    with pytest.raises(LedgerError, match="diverges from"):
        replicate(copies["server"], copies["hospital_a"])
    assert replicate(copies["server"], copies["hospital_b"]) == 1


@dataclass
class _Party:
    """A stand-in for a secure-aggregation site: answers each step with a fixed message."""

    requests: Mapping[str, type]
    site: str

    def upload(self) -> bytes:
        return f"keys of {self.site}".encode()

    def answer(self, step: str, message: object) -> bytes:
        return f"{step} from {self.site}".encode()


def test_a_protected_round_records_the_digest_of_what_each_site_sent(tmp_path: Path) -> None:
    keys, signers = run_keys(tmp_path, [*SITES, SERVER])
    recorder = LedgerRecorder(tmp_path / "provenance" / "fedavg", keys, signers, SITES)
    opened = recorder.protocol(lambda task, invitation, result: _Party({}, result.site))
    task = TrainTask(1, weights(0.0))
    for index, site in enumerate(SITES):
        party = opened(task, None, TrainResult(site, 1, weights(1.0), num_samples=3 + index))
        party.upload()
        party.answer("masked", b"")
    total = TrainResult(AGGREGATE_SITE, 1, weights(1.0), num_samples=7, metrics={AGGREGATE_SITES_METRIC: 2})
    recorder.record_round(ServerState(1, weights(1.0)), [total], {})

    expected = MessageDigest()
    expected.add(b"keys of hospital_b")
    expected.add(b"masked from hospital_b")
    updates = [entry for entry in recorder.ledger.entries if entry.kind == "update"]
    assert [(entry.signer, entry.num_samples) for entry in updates] == [("hospital_a", 3), ("hospital_b", 4)]
    assert updates[1].digest == expected.hexdigest() != updates[0].digest
    [found] = verify(tmp_path)
    assert found.ledger.entries[-1].inputs == tuple(entry.digest for entry in updates)
