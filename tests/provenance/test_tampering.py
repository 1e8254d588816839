"""``verify`` detects every kind of tampering, naming the entry and the reason."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ledger_helpers import Recorded, weights
from safetensors.torch import save_file

from medfed.provenance import LedgerError, entry_hash, sign
from medfed.provenance.entries import entry_line, parse_entry
from medfed.provenance.verify import recorded_model, verify
from medfed.provision.certs import create_ca
from medfed.provision.revocation import write_crl


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _refused(recorded: Recorded, **options: object) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        verify(recorded.run_dir, **options)  # type: ignore[arg-type]
    return caught.value


def test_an_untouched_run_verifies_and_its_copies_agree(recorded: Recorded) -> None:
    [found] = verify(recorded.run_dir)
    assert len(found.ledger) == 6 and set(found.copies) == {"hospital_a", "hospital_b"}
    assert all(copy.head() == found.ledger.head() for copy in found.copies.values())
    assert [entry.kind for entry in found.ledger.entries] == ["update", "update", "aggregate"] * 2


def test_a_modified_entry_is_detected(recorded: Recorded) -> None:
    lines = _lines(recorded.ledger)
    data = json.loads(lines[1])
    data["num_samples"] = 1000  # hospital_b claims more weight
    lines[1] = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    _write(recorded.ledger, lines)
    error = _refused(recorded)
    assert error.index == 1 and "bad signature" in error.reason and "modified or forged" in error.reason


def test_a_deleted_entry_is_detected(recorded: Recorded) -> None:
    lines = _lines(recorded.ledger)
    _write(recorded.ledger, lines[:1] + lines[2:])
    error = _refused(recorded)
    assert error.index == 1 and "numbered 2 at position 1" in error.reason


def test_a_deleted_last_entry_is_detected_by_the_sites_copies(recorded: Recorded) -> None:
    _write(recorded.ledger, _lines(recorded.ledger)[:-1])
    error = _refused(recorded)
    assert "copies disagree" in error.reason and "holds entries 5-5" in error.reason


def test_an_inserted_entry_is_detected(recorded: Recorded) -> None:
    lines = _lines(recorded.ledger)
    _write(recorded.ledger, lines[:2] + [lines[0]] + lines[2:])
    error = _refused(recorded)
    assert error.index == 2 and "numbered 0 at position 2" in error.reason


def test_reordered_entries_are_detected(recorded: Recorded) -> None:
    lines = _lines(recorded.ledger)
    lines[0], lines[1] = lines[1], lines[0]
    _write(recorded.ledger, lines)
    error = _refused(recorded)
    assert error.index == 0 and "numbered 1 at position 0" in error.reason


def test_renumbered_and_relinked_entries_still_fail_on_their_signature(recorded: Recorded) -> None:
    """Deleting entry 1 and fixing the indexes and links of the rest breaks their signatures."""
    entries = [parse_entry(line) for line in _lines(recorded.ledger)]
    del entries[1]
    fixed, previous = [], entries[0].previous
    for index, entry in enumerate(entries):
        entry = replace(entry, index=index, previous=previous)
        fixed.append(entry)
        previous = entry_hash(entry)
    _write(recorded.ledger, [entry_line(entry) for entry in fixed])
    error = _refused(recorded)
    assert error.index == 1 and "bad signature" in error.reason


def test_an_entry_signed_with_another_key_is_a_bad_signature(recorded: Recorded) -> None:
    lines = _lines(recorded.ledger)
    forged = sign(parse_entry(lines[0]), recorded.keys["hospital_b"])  # b signs as a
    _write(recorded.ledger, [entry_line(forged), *lines[1:]])
    error = _refused(recorded)
    assert error.index == 0 and "bad signature: not signed by 'hospital_a'" in error.reason


def test_an_unknown_signer_is_detected(recorded: Recorded) -> None:
    last = parse_entry(_lines(recorded.ledger)[-1])
    intruder = replace(last, index=last.index + 1, previous=entry_hash(last), signer="mallory", inputs=())
    intruder = sign(replace(intruder, kind="update"), Ed25519PrivateKey.generate())
    with recorded.ledger.open("ab") as handle:
        handle.write(entry_line(intruder) + b"\n")
    error = _refused(recorded)
    assert error.index == 6 and "unknown signer 'mallory'" in error.reason


def test_a_revoked_signer_is_detected(recorded: Recorded, tmp_path: Path) -> None:
    ca = create_ca("test", days=1)
    crl = tmp_path / "crl.pem"
    write_crl(ca, [recorded.signers.known["hospital_b"].serial], crl)
    error = _refused(recorded, crl=crl)
    assert error.index == 1 and "signer 'hospital_b' is revoked" in error.reason


def test_the_recorded_model_verifies_and_a_swapped_one_fails(recorded: Recorded, tmp_path: Path) -> None:
    sets = verify(recorded.run_dir)
    assert recorded_model(sets, recorded.model).index == 5
    swapped = tmp_path / "swapped.safetensors"
    save_file(weights(2.06), str(swapped))  # a model that differs from the trained one
    with pytest.raises(LedgerError, match="is not recorded in the ledger"):
        recorded_model(sets, swapped)


def test_an_incomplete_last_line_is_reported_not_accepted(recorded: Recorded) -> None:
    data = recorded.ledger.read_bytes()
    recorded.ledger.write_bytes(data[: len(data) - 40])  # a write killed mid-line
    error = _refused(recorded)
    assert error.index == 5 and "last line is incomplete" in error.reason
