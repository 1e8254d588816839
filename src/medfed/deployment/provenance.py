"""The provenance ledger of a deployed job (``medfed.provenance``): two short steps per round.

After a round the server chains one ``update`` entry per site whose update it aggregated and
posts step ``ledger/sign``: each site gets its own entry, checks that it states what the site sent
(its round, sample count, metrics and the SHA-256 of its update) and answers with its Ed25519
signature. The server appends the signed entries and its own ``aggregate`` entry, then posts step
``ledger/sync``: each reachable site gets the entries its copy lacks, checks every one of them
before appending it, and answers with its copy's length and head, which the server compares with
its own. A site that does not sign in time is left out of the record of that round (logged).

In a secure or encrypted round the server never sees a site's update: a site's entry states the
SHA-256 of the protocol messages the server accepted from it (its masked input or ciphertext, its
keys and shares, in the order sent), and the site signs it only if that is the digest of what it
sent. Keys come from provisioning (``ledger.key`` and ``signers.json`` in each kit).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medfed.errors import UpdateRejected
from medfed.files import atomic_write
from medfed.orchestration.driver import RowSource
from medfed.orchestration.grid import SiteProtocol
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.recording import DigestingProtocol, privacy_spent, result_entry
from medfed.provenance import (
    Entry,
    Ledger,
    LedgerError,
    MessageDigest,
    Signers,
    load_signers,
    sign,
    weights_digest,
)
from medfed.provenance.entries import MAX_LINE_BYTES, draft, entry_hash, entry_line, parse_entry
from medfed.provenance.signers import load_key
from medfed.provenance.verify import LEDGER_FILE, PROVENANCE_DIR, SIGNERS_FILE
from medfed.transport.board import RoundBoard
from medfed.types import AGGREGATE_SITE, ServerState, TrainResult

logger = logging.getLogger(__name__)

SIGN, SYNC = "ledger/sign", "ledger/sync"
"""The names of the two steps (server and sites both use these constants)."""

SERVER = "server"
MAX_SYNC_ENTRIES = 10_000
"""Most entries one sync message may carry (a site refuses more)."""
_SIGN_ATTEMPTS = 3


@dataclass(frozen=True)
class LedgerKeys:
    """A party's ledger key and the project's signer list, from its startup kit, and the
    project's revocation list (a networked peer refuses revoked signers' entries in the copies it
    keeps of its peers' chains)."""

    key: Path
    signers: Path
    crl: Path | None = None

    def load(self) -> tuple[Ed25519PrivateKey, Signers]:
        """The private key and the signers; raises ``LedgerError`` when unusable."""
        return load_key(self.key), load_signers(self.signers)


def ledger_folder(state_dir: Path, job: str) -> Path:
    """Where a party keeps its copy of ``job``'s ledger (a site keys ``job`` by fingerprint)."""
    return state_dir / PROVENANCE_DIR / job


def job_fingerprint(job_json: str) -> str:
    """How a site names a job's ledger folder: 16 hex digits of SHA-256 of the job it was sent
    (the server's name for the job is not trusted as a path)."""
    return hashlib.sha256(job_json.encode()).hexdigest()[:16]


def keep_signers(state_dir: Path, keys: LedgerKeys) -> None:
    """Copies the signer list next to the ledgers, so ``medfed ledger verify STATE_DIR`` finds it."""
    atomic_write(state_dir / PROVENANCE_DIR / SIGNERS_FILE, keys.signers.read_bytes())


# ----- the server's half -----------------------------------------------------------------------
class ServerLedger:
    """The server's copy of a job's ledger, and the sign and sync steps.

    Args:
        board: The running job's board (free between rounds).
        folder: The job's ledger folder.
        keys: The server's key and the signer list.
        timeout_s: Deadline of each step.
        reachable: The sites to send new entries to (those heard from recently).
        protected: Each site's digest of the protocol messages the server accepted from it in
            the latest secure or encrypted round (``DigestingGrid.take``).
    """

    def __init__(
        self,
        board: RoundBoard,
        folder: Path,
        keys: LedgerKeys,
        *,
        timeout_s: float,
        reachable: Callable[[], Sequence[str]],
        protected: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self.key, signers = keys.load()
        self.ledger = Ledger(folder / LEDGER_FILE, signers)
        self.board, self.timeout_s, self.reachable = board, timeout_s, reachable
        self.protected = protected
        self._known: dict[str, int] = {}

    def recording(self, privacy: RowSource) -> RowSource:
        """The ``privacy`` row source, recording each round in the ledger with the server's
        privacy its rows state (``client_epsilon``), before the checkpoint, so every
        checkpointed model is in the ledger (a round replayed after a crash is recorded again)."""

        def rows(state: ServerState, results: list[TrainResult]) -> list[MetricRow]:
            spent = privacy(state, results)
            self.record(state, results, privacy_spent(spent).get(SERVER, {}))
            return spent

        return rows

    def record(self, state: ServerState, results: list[TrainResult], privacy: Mapping[str, float]) -> None:
        """Records the round (signed updates, then the aggregate with the server's ``privacy``
        spent) and shares the new entries."""
        drafts = {
            result.site: result_entry(result, result.round)
            for result in results
            if result.site != AGGREGATE_SITE
        }
        if any(result.site == AGGREGATE_SITE for result in results):
            drafts.update(
                {
                    site: draft("update", state.round, site, digest)
                    for site, digest in self.protected().items()
                }
            )
        signed = self._signed(state.round, drafts)
        for entry in signed:
            self.ledger.append(entry)
        aggregate = replace(
            draft("aggregate", state.round, SERVER, weights_digest(state.weights), privacy=privacy),
            index=len(self.ledger),
            previous=self.ledger.head(),
            inputs=tuple(entry.digest for entry in signed),
        )
        self.ledger.append(sign(aggregate, self.key))
        self._sync(state.round)

    def _signed(self, round: int, drafts: Mapping[str, Entry]) -> list[Entry]:
        """The sites' signed entries; a site that does not sign is left out and the rest are
        chained again (a few attempts)."""
        pending = sorted(drafts)
        for _ in range(_SIGN_ATTEMPTS):
            entries, previous = {}, self.ledger.head()
            for offset, site in enumerate(pending):
                entry = replace(drafts[site], index=len(self.ledger) + offset, previous=previous)
                entries[site], previous = entry, entry_hash(entry)
            if not entries:
                return []
            messages = {site: entry_line(entry) for site, entry in entries.items()}
            self.board.post_step(
                round, SIGN, messages, accept=_signature(entries, self.ledger.signers), reply_limit=256
            )
            signed: dict[str, Entry] = self.board.collect(self.timeout_s)
            if len(signed) == len(entries):
                return [signed[site] for site in entries]
            logger.warning(
                "round %d: %s did not sign their ledger entries", round, sorted(set(entries) - set(signed))
            )
            pending = [site for site in pending if site in signed]
        return []

    def _sync(self, round: int) -> None:
        sites = list(self.reachable())
        if not sites:
            return
        entries = self.ledger.entries
        messages = {
            site: b"\n".join(entry_line(entry) for entry in entries[self._known.get(site, 0) :])
            for site in sites
        }
        self.board.post_step(round, SYNC, messages, accept=_copy_state, reply_limit=256)
        heads: dict[str, tuple[int, str]] = self.board.collect(self.timeout_s)
        for site, (length, head) in heads.items():
            if 0 < length <= len(entries) and entry_hash(entries[length - 1]) == head:
                self._known[site] = length
            if length != len(entries) or head != self.ledger.head():
                logger.warning(
                    "round %d: %s's ledger copy (%d entries, head %.12s) differs from the server's (%d, %.12s)",
                    round,
                    site,
                    length,
                    head,
                    len(entries),
                    self.ledger.head(),
                )
                self._known.pop(site, None)


def _signature(entries: Mapping[str, Entry], signers: Signers) -> Callable[[str, bytes], Entry]:
    def accept(site: str, payload: bytes) -> Entry:
        signed = replace(entries[site], signature=payload.hex())
        try:
            signers.check(signed)
        except ValueError as error:
            raise UpdateRejected(site, f"ledger signature: {error}") from None
        return signed

    return accept


def _copy_state(site: str, payload: bytes) -> tuple[int, str]:
    try:
        data = json.loads(payload)
        length, head = int(data["length"]), str(data["head"])
    except (ValueError, KeyError, TypeError) as error:
        raise UpdateRejected(site, f"ledger sync reply: {error}") from None
    return length, head[:64]


# ----- the site's half -------------------------------------------------------------------------
class SiteLedger:
    """A site's copy of a job's ledger: signs its own entries, checks and appends the rest.

    Args:
        site: This site's name.
        keys: Its ledger key and the project's signer list.
        state_dir: The site's own folder (copies live in ``provenance/<job>/ledger.jsonl``).
    """

    def __init__(self, site: str, keys: LedgerKeys, state_dir: Path) -> None:
        self.site, self.state_dir = site, state_dir
        self.key, self.signers = keys.load()
        keep_signers(state_dir, keys)
        self._sent: Callable[[], Entry] | None = None
        self._copies: dict[str, Ledger] = {}

    def sent(self, result: TrainResult) -> None:
        """Remembers the update this site sent in the clear (the only one it will sign for)."""
        self._sent = lambda: result_entry(result, result.round)

    def protocol(self, round: int, inner: SiteProtocol) -> SiteProtocol:
        """``inner``, this site's half of a secure or encrypted ``round``, digesting each
        message it sends: what it will sign for (instead of an update sent in the clear)."""
        messages = MessageDigest()
        self._sent = lambda: draft("update", round, self.site, messages.hexdigest())
        return DigestingProtocol(inner, messages)

    def sign(self, round: int, message: bytes) -> bytes:
        """This site's signature of the entry in ``message``, if it states what the site sent.

        Raises:
            LedgerError: It does not (or it is not an entry).
        """
        entry = _parsed(message)
        expected = None if self._sent is None else self._sent()
        if (
            expected is None
            or entry != replace(expected, index=entry.index, previous=entry.previous)
            or round != entry.round
        ):
            raise LedgerError(
                self.site, entry.index, "refusing to sign: the entry does not state what this site sent"
            )
        return bytes.fromhex(sign(entry, self.key).signature)

    def sync(self, job: str, message: bytes) -> bytes:
        """Checks and appends the entries in ``message`` this site's copy lacks; answers with the
        copy's length and head.

        Raises:
            LedgerError: An entry fails a check, or contradicts one the copy holds.
        """
        copy = self._copy(job)
        lines = message.split(b"\n") if message else []
        if len(lines) > MAX_SYNC_ENTRIES:
            raise LedgerError(copy.name, None, f"more than {MAX_SYNC_ENTRIES} entries in one message")
        for line in lines:
            entry = _parsed(line)
            if entry.index < len(copy):
                if copy.entries[entry.index] != entry:
                    raise LedgerError(copy.name, entry.index, "the server's entry differs from this copy's")
                continue
            copy.append(entry)
        return json.dumps({"length": len(copy), "head": copy.head()}).encode()

    def _copy(self, job: str) -> Ledger:
        if job not in self._copies:
            folder = ledger_folder(self.state_dir, job)
            self._copies[job] = Ledger(folder / LEDGER_FILE, self.signers, name=f"{self.site}'s copy")
        return self._copies[job]


def _parsed(line: bytes) -> Entry:
    if len(line) > MAX_LINE_BYTES:
        raise LedgerError("message", None, "entry too long")
    try:
        return parse_entry(line)
    except (ValueError, RecursionError) as error:
        raise LedgerError("message", None, f"not a valid entry: {error}") from None
