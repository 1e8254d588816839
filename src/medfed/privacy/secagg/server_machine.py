"""The server's protocol state machine of secure aggregation (Bonawitz et al. 2017, figure 4).
No I/O: a grid carries its messages (``rounds.SecureAggregationRound``).

The server routes messages and, in round 3, reconstructs the self-mask seeds of the survivors
and the mask keys of the drop-outs to strip the masks off the sum. It sees masked inputs and
at most ``t - 1`` shares of any secret it must not learn, so it learns the sum and nothing
else. Whenever the sum cannot be recovered exactly it raises ``SecureAggregationError``.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from medfed.privacy.secagg import crypto, shamir
from medfed.privacy.secagg.config import check_config, code_of, require_quorum, require_session
from medfed.privacy.secagg.encoding import decode
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.privacy.secagg.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShare,
    KeyDirectory,
    MaskedInput,
    RevealedShare,
    SecAggConfig,
    ShareDelivery,
    ShareKeys,
    SignedSurvivors,
    SurvivorSignature,
    UnmaskRequest,
    UnmaskResponse,
)


class _Stage(enum.Enum):
    KEYS = 0
    SHARES = 1
    MASKED = 2
    CHECK = 3
    UNMASK = 4
    DONE = 5


class SecAggServer:
    """The server of one aggregation.

    Args:
        config: The aggregation's parameters (the same object sent to the clients).
    """

    def __init__(self, config: SecAggConfig) -> None:
        check_config(config)
        self.config = config
        self._code = code_of(config)
        self._stage = _Stage.KEYS
        self._keys: dict[int, AdvertiseKeys] = {}  # U1
        self._commitments: dict[int, bytes] = {}  # U2
        self._sum = np.zeros(config.vector_length, dtype=self._code.dtype)
        self._survivors: tuple[int, ...] = ()  # U3

    @property
    def contributors(self) -> tuple[int, ...]:
        """The clients whose inputs are in the sum (U3), known after round 2."""
        return self._survivors

    def collect_keys(self, adverts: Sequence[AdvertiseKeys]) -> KeyDirectory:
        """Round 0: the directory of the clients that advertised keys (U1)."""
        self._advance(_Stage.KEYS)
        for advert in adverts:
            self._check_sender(advert.session, advert.sender, self._keys, "advertised keys")
            self._keys[advert.sender] = advert
        require_quorum("advertise keys", self._keys, self.config.threshold)
        return KeyDirectory(self.config.session, tuple(self._keys[i] for i in sorted(self._keys)))

    def route_shares(self, messages: Sequence[ShareKeys]) -> dict[int, ShareDelivery]:
        """Round 1: forwards each encrypted share to its recipient, for the clients of U2."""
        self._advance(_Stage.SHARES)
        inbox: dict[int, list[EncryptedShare]] = {}
        for message in messages:
            sender = message.sender
            self._check_sender(message.session, sender, self._commitments, "shares")
            if sender not in self._keys:
                raise SecureAggregationError(f"client {sender} shares without advertised keys")
            recipients = sorted(share.recipient for share in message.shares)
            if recipients != sorted(set(self._keys) - {sender}) or any(
                share.sender != sender for share in message.shares
            ):
                raise SecureAggregationError(f"client {sender} did not share with exactly U1")
            self._commitments[sender] = message.seed_commitment
            for share in message.shares:
                inbox.setdefault(share.recipient, []).append(share)
        require_quorum("share keys", self._commitments, self.config.threshold)
        return {
            client: ShareDelivery(self.config.session, client, tuple(inbox.get(client, ())))
            for client in sorted(self._commitments)
        }

    def collect_masked(self, inputs: Sequence[MaskedInput]) -> UnmaskRequest:
        """Round 2: adds the masked inputs of U3 into a running sum modulo ``2^k``."""
        self._advance(_Stage.MASKED)
        seen: dict[int, bytes] = {}
        expected = self.config.vector_length * self._code.dtype.itemsize
        for message in inputs:
            self._check_sender(message.session, message.sender, seen, "masked input")
            if message.sender not in self._commitments:
                raise SecureAggregationError(f"client {message.sender} masked without sharing")
            if len(message.masked) != expected:
                raise SecureAggregationError(
                    f"client {message.sender} sent {len(message.masked)} bytes, expected {expected}"
                )
            seen[message.sender] = b""
            self._sum += np.frombuffer(message.masked, dtype=self._code.dtype.newbyteorder("<"))
        require_quorum("masked input", seen, self.config.threshold)
        self._survivors = tuple(sorted(seen))
        return UnmaskRequest(self.config.session, self._survivors)

    def collect_signatures(self, signatures: Sequence[ConsistencySignature]) -> SignedSurvivors:
        """Round 3 (ConsistencyCheck): the survivors' signatures over U3, for the clients of U4
        (those who signed) to check before they unmask.

        Raises:
            SecureAggregationError: Fewer than ``threshold`` survivors signed, or a signature
                comes from a client outside U3 or twice.
        """
        self._advance(_Stage.CHECK)
        collected: dict[int, bytes] = {}
        for message in signatures:
            self._check_sender(message.session, message.sender, collected, "consistency signature")
            if message.sender not in self._survivors:
                raise SecureAggregationError(f"client {message.sender} signs although not a survivor")
            collected[message.sender] = message.signature
        require_quorum("consistency check", collected, self.config.threshold)
        entries = tuple(SurvivorSignature(sender, collected[sender]) for sender in sorted(collected))
        return SignedSurvivors(self.config.session, self._survivors, entries)

    def unmask(self, responses: Sequence[UnmaskResponse]) -> np.ndarray:
        """Round 3 (or 4 after the ConsistencyCheck): removes every mask and returns the sum
        of U3's inputs.

        Returns:
            The decoded sum, float64, shape ``(vector_length,)``.

        Raises:
            SecureAggregationError: If fewer than ``threshold`` survivors answered, a response
                is malformed, or a reconstructed secret does not match its commitment or
                public key.
        """
        if self._stage is _Stage.CHECK:  # no ConsistencyCheck (anonymous clients)
            self._advance(_Stage.CHECK)
        self._advance(_Stage.UNMASK)
        seed_shares, key_shares = self._gather(responses)
        dropped = sorted(set(self._commitments) - set(self._survivors))
        total = self._sum.copy()
        for owner in self._survivors:
            seed = self._reconstruct_seed(owner, seed_shares[owner])
            total -= crypto.prg(seed, len(total), self._code.dtype)
        for owner in dropped:
            self._remove_pairwise(total, owner, self._reconstruct_key(owner, key_shares[owner]))
        return decode(total, self._code)

    # ----- helpers -----------------------------------------------------------------------------
    def _advance(self, stage: _Stage) -> None:
        if self._stage is not stage:
            raise SecureAggregationError(
                f"server: {stage.name.lower()} called at stage {self._stage.name.lower()}"
            )
        self._stage = _Stage(stage.value + 1)

    def _check_sender(self, session: bytes, sender: int, seen: Collection[int], what: str) -> None:
        require_session(self.config, session, what)
        if sender not in self.config.client_ids:
            raise SecureAggregationError(f"{what} from unknown client {sender}")
        if sender in seen:
            raise SecureAggregationError(f"second {what} from client {sender}")

    def _gather(
        self, responses: Sequence[UnmaskResponse]
    ) -> tuple[dict[int, list[shamir.Share]], dict[int, list[shamir.Share]]]:
        survivors, dropped = set(self._survivors), set(self._commitments) - set(self._survivors)
        seeds: dict[int, list[shamir.Share]] = {owner: [] for owner in survivors}
        keys: dict[int, list[shamir.Share]] = {owner: [] for owner in dropped}
        answered: set[int] = set()
        for response in responses:
            self._check_sender(response.session, response.sender, answered, "unmask response")
            if response.sender not in survivors:
                raise SecureAggregationError(f"client {response.sender} is not a survivor")
            _collect(response.sender, response.seed_shares, survivors, seeds, "seed")
            _collect(response.sender, response.key_shares, dropped, keys, "key")
            answered.add(response.sender)
        require_quorum("unmasking", answered, self.config.threshold)
        return seeds, keys

    def _reconstruct_seed(self, owner: int, shares: list[shamir.Share]) -> bytes:
        secret = shamir.reconstruct_secret(shares[: self.config.threshold])
        seed = _secret_bytes(secret, owner, "self-mask seed")
        if crypto.commit(self.config.session, seed) != self._commitments[owner]:
            raise SecureAggregationError(f"reconstructed seed of client {owner} fails its commitment")
        return seed

    def _reconstruct_key(self, owner: int, shares: list[shamir.Share]) -> X25519PrivateKey:
        secret = shamir.reconstruct_secret(shares[: self.config.threshold])
        key = X25519PrivateKey.from_private_bytes(_secret_bytes(secret, owner, "mask key"))
        if crypto.public_key_bytes(key) != self._keys[owner].s_public:
            raise SecureAggregationError(f"reconstructed mask key of client {owner} is wrong")
        return key

    def _remove_pairwise(self, total: np.ndarray, dropped: int, key: X25519PrivateKey) -> None:
        """Cancels the masks survivors added for their pair with the dropped client."""
        for survivor in self._survivors:
            pair_key = crypto.agree(
                key,
                self._keys[survivor].s_public,
                session=self.config.session,
                info=crypto.MASK_KEY_INFO,
            )
            mask = crypto.prg(pair_key, len(total), self._code.dtype)
            if survivor < dropped:  # the survivor added +mask
                total -= mask
            else:
                total += mask


def _collect(
    holder: int,
    revealed: Sequence[RevealedShare],
    owners: set[int],
    into: dict[int, list[shamir.Share]],
    kind: str,
) -> None:
    """Adds ``holder``'s revealed shares to ``into``; each owner of ``owners`` exactly once."""
    if sorted(share.owner for share in revealed) != sorted(owners):
        raise SecureAggregationError(f"client {holder} revealed {kind} shares of the wrong clients")
    for share in revealed:
        try:
            y = shamir.decode_share_value(share.value)
        except ValueError as error:
            raise SecureAggregationError(f"client {holder}: malformed {kind} share") from error
        into[share.owner].append(shamir.Share(holder, y))


def _secret_bytes(secret: int, owner: int, what: str) -> bytes:
    if secret >= 2 ** (8 * crypto.KEY_BYTES):
        raise SecureAggregationError(f"reconstructed {what} of client {owner} is out of range")
    return secret.to_bytes(crypto.KEY_BYTES, "big")
