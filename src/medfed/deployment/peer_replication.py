"""A networked peer's copies of its peers' provenance chains, replicated over the ``Peer``
service (``FetchChain``).

Every peer serves the chains it keeps, its own and its copies of its peers', a bounded page at
a time (``ChainCopies.serve``). After each round, and once more after gathering the final
models, it asks each peer for the entries of that peer's chain its copy lacks; when the peer
cannot be reached or its answer is refused, it asks the other peers for their copies. Each
entry is checked before it is appended (``medfed.provenance.chain_copies``: position, link,
signed by the chain's owner, a known signer not in the kit's revocation list, signature). A
peer whose chain forked or lost entries is named in one log line and its copy is kept as it
was; an unreachable peer or a bad answer is logged once and skipped: nothing another peer sends
stops the round loop.

A peer's model is merged only once its chain, as copied here, records it as an update
(``unrecorded``, asked by ``PeerLinks`` for every model it fetches): so each merge this site
signs cites inputs its own state directory holds, and a peer whose chain diverged, or that
serves a model it did not sign into its chain, is merged with no more.

So that every site's state directory verifies on its own after a run, a site keeps serving
after its last round until each peer of its consensus that replicates chains holds all of its
own chain (``behind``, within ``finish_timeout_s``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

import grpc

from medfed.deployment.provenance import LedgerKeys
from medfed.provenance import Ledger, LedgerError, Signers, load_signers
from medfed.provenance.chain_copies import ChainPage, page_start, read_page, take_page
from medfed.provenance.chains import chain_path
from medfed.provenance.errors import ChainDiverged
from medfed.provision.errors import ProvisionError
from medfed.transport.errors import AuthenticationError, PayloadError
from medfed.transport.peer import (
    MAX_CHAIN_BYTES,
    MAX_CHAIN_ENTRIES,
    NONCE_BYTES,
    ChainAnswer,
    ChainRequest,
    PeerChannel,
    call_failure,
)

logger = logging.getLogger(__name__)

MAX_PAGES = 100
"""Most pages fetched for one chain in one update (the rest waits for the next round)."""


class ChainCopies:
    """This site's own chain and its copies of its peers' chains, in the job's ledger folder.

    Args:
        folder: The job's ledger folder (``ledger_folder(state_dir, job)``).
        job: The job's name (a peer asks for the chains of this job only).
        me: This site's name (its own chain is ``PeerChain``'s; it is only served here).
        keys: The signer list and revocation list the copies check entries against.
        peers: The other sites.
        max_entries: Most entries per page, served and accepted.
        max_bytes: Most bytes of entries per page, served and accepted.

    Raises:
        LedgerError: The signer list is unusable.
        ProvisionError: The revocation list is unusable.
    """

    def __init__(
        self,
        folder: Path,
        job: str,
        me: str,
        keys: LedgerKeys,
        peers: Iterable[str],
        *,
        max_entries: int = MAX_CHAIN_ENTRIES,
        max_bytes: int = MAX_CHAIN_BYTES,
    ) -> None:
        self.folder, self.job, self.me = folder, job, me
        self.max_entries, self.max_bytes = max_entries, max_bytes
        others = sorted(peers)
        self._signers, self._crl = load_signers(keys.signers), keys.crl
        signers = self._signers.with_revocation_list(keys.crl)
        self.copies = {peer: copy for peer in others if (copy := self._load(peer, signers)) is not None}
        self._sites = {me, *others}
        self._held: dict[str, int] = {}  # entries of this site's chain each caller was sent
        self._lock = threading.Lock()
        self._reported: dict[tuple[str, str], str] = {}
        self.diverged: set[str] = set()  # peers whose chain forked or lost entries

    def _load(self, peer: str, signers: Signers) -> Ledger | None:
        try:
            return Ledger(chain_path(self.folder, peer), signers, name=f"copy of {peer}'s chain", owner=peer)
        except LedgerError as error:
            logger.warning("provenance: %s; this copy is no longer replicated", error)
            return None

    def serve(self, caller: str, job: str, owner: str, start: int) -> ChainAnswer | None:
        """The page of ``owner``'s chain (this site's own, or its copy) from ``start`` on, for
        ``caller`` (``medfed.transport.peer.ChainSource``); ``None`` for another job, a site
        not of this federation, or a file this site cannot read (logged)."""
        if job != self.job or owner not in self._sites:
            return None
        try:
            page = read_page(
                chain_path(self.folder, owner), start, max_entries=self.max_entries, max_bytes=self.max_bytes
            )
        except LedgerError as error:
            logger.warning("provenance: cannot serve %s: %s", owner, error)
            return None
        if owner == self.me:
            with self._lock:
                self._held[caller] = max(self._held.get(caller, 0), page.start + len(page.entries))
        return ChainAnswer(page.entries, page.length, page.head)

    def behind(self) -> set[str]:
        """The peers that replicate this site's chain (they fetched some of it) but were not
        yet sent all of it."""
        length = self._own_length()
        with self._lock:
            return {caller for caller, held in self._held.items() if held < length}

    def update(self, channels: Mapping[str, PeerChannel], *, offline: Collection[str] = ()) -> None:
        """Brings each copy up to date from its owner or, when the owner cannot be reached or
        its answer is refused, from the first other peer that answers with its copy. Peers in
        ``offline`` (their last call failed) are not called: no call waits out its deadline."""
        self._reread_revocations()
        for owner, copy in self.copies.items():
            sources = [owner, *sorted(set(channels) - {owner})]
            for source in (peer for peer in sources if peer in channels and peer not in offline):
                if self._catch_up(channels[source], copy, owner):
                    break

    def unrecorded(self, owner: str, digest: str, channel: PeerChannel, *, final: bool = False) -> str | None:
        """Why ``owner``'s model of ``digest`` (``weights_digest``) may not be merged: its chain
        is not replicated here, diverged, or, brought up to date from ``channel``'s peer, does
        not record that model as an update (a ``final`` model: as an update or a merge's
        output, e.g. gossip's last mix); ``None`` when it does."""
        kinds = ("update", "aggregate") if final else ("update",)
        copy = self.copies.get(owner)
        if copy is None:
            return "its provenance chain is not replicated here"
        if not _records(copy, digest, kinds):
            self._reread_revocations()
            self._catch_up(channel, copy, owner)
        if owner in self.diverged:
            return "its provenance chain diverged"
        if not _records(copy, digest, kinds):
            return f"its provenance chain does not record this model as its {' or '.join(kinds)}"
        return None

    def _reread_revocations(self) -> None:
        """Checks the copies' new entries against the kit's revocation list as it is now, so a
        signer revoked during the run is refused from then on; an unreadable list leaves the
        last one in force (logged once)."""
        try:
            signers = self._signers.with_revocation_list(self._crl)
        except ProvisionError as error:
            self._report(self.me, "crl", logging.WARNING, f"provenance: revocation list not re-read: {error}")
            return
        for copy in self.copies.values():
            copy.signers = signers

    def _catch_up(self, channel: PeerChannel, copy: Ledger, owner: str) -> bool:
        """Takes in pages of ``owner``'s chain from ``channel``'s peer until the copy holds all
        of it (or ``MAX_PAGES``); ``False`` when the peer could not be used."""
        for _ in range(MAX_PAGES):
            request = ChainRequest(os.urandom(NONCE_BYTES), self.job, owner, page_start(copy))
            try:
                answer = channel.fetch_chain(request, max_entries=self.max_entries, max_bytes=self.max_bytes)
                page = ChainPage(request.start, answer.entries, answer.length, answer.head)
                taken = take_page(copy, page, source=channel.peer, owner=owner)
            except ChainDiverged as error:
                self.diverged.add(owner)
                self._report(owner, channel.peer, logging.WARNING, f"provenance: diverged: {error}")
                return True
            except grpc.RpcError as error:
                self._report(
                    owner,
                    channel.peer,
                    logging.INFO,
                    f"{owner}'s chain not fetched from {channel.peer}: {call_failure(error)}",
                )
                return False
            except (PayloadError, AuthenticationError, LedgerError) as error:
                self._report(
                    owner,
                    channel.peer,
                    logging.WARNING,
                    f"provenance: {owner}'s chain from {channel.peer} refused: {error}",
                )
                return False
            if not taken or len(copy) >= answer.length:
                break
        self._reported.pop((owner, channel.peer), None)
        return True

    def _report(self, owner: str, source: str, level: int, line: str) -> None:
        """Logs ``line`` unless it was the last one logged about ``owner``'s chain from ``source``."""
        if self._reported.get((owner, source)) != line:
            logger.log(level, "%s", line)
        self._reported[(owner, source)] = line

    def _own_length(self) -> int:
        try:
            return read_page(chain_path(self.folder, self.me), 0, max_entries=0, max_bytes=0).length
        except LedgerError:
            return 0


def _records(copy: Ledger, digest: str, kinds: Collection[str]) -> bool:
    """Whether ``copy`` holds an entry of one of ``kinds`` with ``digest``."""
    return any(entry.kind in kinds and entry.digest == digest for entry in copy.entries)


def chain_copies(
    keys: LedgerKeys | None, folder: Path, job: str, me: str, peers: Iterable[str]
) -> ChainCopies | None:
    """This site's copies of its peers' chains (``None`` without a ledger key: no chains)."""
    return None if keys is None else ChainCopies(folder, job, me, keys, peers)
