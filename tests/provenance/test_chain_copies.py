"""Copies of peers' chains: pages served from a chain file, and the checks a copy makes before it
takes a page in (whatever a page holds, the copy never loses an entry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medfed.orchestration.recording import run_keys
from medfed.provenance import GENESIS, Ledger, LedgerError, Signers, append_signed, sign
from medfed.provenance.chain_copies import ChainPage, page_start, read_page, take_page
from medfed.provenance.chains import chain_path
from medfed.provenance.entries import draft, entry_line
from medfed.provenance.errors import ChainDiverged

PEERS = ["hospital_a", "hospital_b"]
BIG = 10**6
Keys = tuple[dict[str, Ed25519PrivateKey], Signers]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return run_keys(tmp_path, PEERS)


def _chain(
    folder: Path, signers: Signers, key: Ed25519PrivateKey, entries: int, *, digit: str = "a"
) -> Ledger:
    """hospital_a's chain of ``entries`` updates (their digests made of ``digit``)."""
    chain = Ledger(chain_path(folder, "hospital_a"), signers, owner="hospital_a")
    for round in range(1, entries + 1):
        append_signed(chain, draft("update", round, "hospital_a", digit * 63 + str(round % 10)), key)
    return chain


def _copy(folder: Path, signers: Signers) -> Ledger:
    return Ledger(folder / "copy" / "hospital_a.jsonl", signers, name="copy", owner="hospital_a")


def _page(chain: Ledger, copy: Ledger, *, max_entries: int = BIG) -> ChainPage:
    return read_page(chain.path, page_start(copy), max_entries=max_entries, max_bytes=BIG)


def _fill(chain: Ledger, copy: Ledger, source: str = "hospital_a") -> int:
    return take_page(copy, _page(chain, copy), source=source, owner="hospital_a")


def test_a_page_holds_complete_lines_only_within_its_bounds(tmp_path: Path, keys: Keys) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 3)
    lines = chain.path.read_bytes().split(b"\n")[:3]
    with chain.path.open("ab") as file:
        file.write(b'{"index": 3, "half wri')  # an append in progress
    page = read_page(chain.path, 1, max_entries=BIG, max_bytes=BIG)
    assert page == ChainPage(1, tuple(lines[1:]), 3, chain.head())
    assert read_page(chain.path, 0, max_entries=2, max_bytes=BIG).entries == tuple(lines[:2])
    assert read_page(chain.path, 0, max_entries=BIG, max_bytes=len(lines[0]) + 1).entries == (lines[0],)
    assert read_page(chain.path, 5, max_entries=1, max_bytes=BIG) == ChainPage(5, (), 3, chain.head())
    assert read_page(tmp_path / "none.jsonl", 0, max_entries=5, max_bytes=BIG) == ChainPage(0, (), 0, GENESIS)


def test_a_copy_taken_in_small_pages_holds_the_chain(tmp_path: Path, keys: Keys) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 5)
    copy = _copy(tmp_path, keys[1])
    taken = [take_page(copy, _page(chain, copy, max_entries=2), source="hospital_b", owner="hospital_a")]
    while len(copy) < len(chain):
        taken.append(
            take_page(copy, _page(chain, copy, max_entries=2), source="hospital_b", owner="hospital_a")
        )
    assert taken == [2, 1, 1, 1]  # after the first, each page repeats the copy's last entry
    assert copy.entries == chain.entries and copy.head() == chain.head()
    assert _fill(chain, copy) == 0  # up to date: nothing to take


def test_an_entry_signed_by_another_peer_is_refused_and_the_copy_left_untouched(
    tmp_path: Path, keys: Keys
) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 2)
    copy = _copy(tmp_path, keys[1])
    _fill(chain, copy)
    before = copy.path.read_bytes()
    forged = sign(
        replace(draft("update", 3, "hospital_b", "f" * 64), index=2, previous=chain.head()),
        keys[0]["hospital_b"],
    )
    with chain.path.open("ab") as file:  # hospital_a serves an entry of hospital_b in its chain
        file.write(entry_line(forged) + b"\n")
    with pytest.raises(LedgerError, match="entry 2: signed by another party than 'hospital_a'"):
        _fill(chain, copy)
    assert copy.path.read_bytes() == before and len(copy) == 2


def test_a_forked_chain_is_divergence_and_the_copy_is_kept(tmp_path: Path, keys: Keys) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 3)
    copy = _copy(tmp_path, keys[1])
    _fill(chain, copy)
    before = copy.path.read_bytes()
    chain.path.unlink()  # hospital_a rewrites its history from entry 1 on, signed with its own key
    rewritten = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 4, digit="b")
    for source in ("hospital_a", "hospital_b"):  # the owner itself, or a peer relaying its copy
        with pytest.raises(ChainDiverged, match="'hospital_a' signed two different entries 2"):
            take_page(copy, _page(rewritten, copy), source=source, owner="hospital_a")
    assert copy.path.read_bytes() == before


def test_an_owner_whose_chain_lost_entries_has_diverged_a_lagging_relay_has_not(
    tmp_path: Path, keys: Keys
) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 3)
    copy = _copy(tmp_path, keys[1])
    _fill(chain, copy)
    chain.path.write_bytes(b"".join(line + b"\n" for line in chain.path.read_bytes().split(b"\n")[:1]))
    assert _fill(chain, copy, source="hospital_b") == 0
    with pytest.raises(ChainDiverged, match="'hospital_a' now holds 1 entries, the copy here 3"):
        _fill(chain, copy)
    assert len(_copy(tmp_path, keys[1])) == 3


@pytest.mark.parametrize(
    ("hostile", "why"),
    [
        (lambda page: replace(page, start=0), "not the one asked for"),
        (lambda page: replace(page, length=0), "not the one asked for"),
        (lambda page: replace(page, head="0" * 64), "head that is not the one of its entries"),
        (lambda page: replace(page, entries=(b"{not json",)), "invalid entry"),
        (lambda page: replace(page, entries=(page.entries[1],)), "bad entry: entry 2"),
    ],
)
def test_a_hostile_page_is_refused(
    tmp_path: Path, keys: Keys, hostile: Callable[[ChainPage], ChainPage], why: str
) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 3)
    copy = _copy(tmp_path, keys[1])
    take_page(copy, read_page(chain.path, 0, max_entries=2, max_bytes=BIG), source="b", owner="hospital_a")
    with pytest.raises(LedgerError, match=why):
        take_page(copy, hostile(_page(chain, copy)), source="hospital_b", owner="hospital_a")
    assert len(copy) == 2


def test_a_revoked_signer_entries_are_refused(tmp_path: Path, keys: Keys) -> None:
    chain = _chain(tmp_path, keys[1], keys[0]["hospital_a"], 1)
    revoked = replace(keys[1], revoked=frozenset({keys[1].known["hospital_a"].serial}))
    copy = _copy(tmp_path, revoked)
    with pytest.raises(LedgerError, match="signer 'hospital_a' is revoked"):
        _fill(chain, copy)
    assert not copy.path.exists()
