"""The site's protocol state machine of secure aggregation (Bonawitz et al. 2017, figure 4;
the paper's "client"). No I/O: a grid carries its messages (``rounds.SecureAggregationSite``).

The client holds its input and its secrets; what leaves it are the messages of
``medfed.privacy.secagg.messages``. Its stage guard makes each round answerable once and in
order, so it can never reveal both the self-mask seed and the mask key of the same client.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from medfed.privacy.secagg import crypto, shamir
from medfed.privacy.secagg.authentication import KeyAuthenticator, signed_keys, signed_survivors
from medfed.privacy.secagg.config import check_config, code_of, require_quorum, require_session
from medfed.privacy.secagg.encoding import encode
from medfed.privacy.secagg.errors import SecureAggregationError
from medfed.privacy.secagg.messages import (
    AdvertiseKeys,
    ConsistencyCheck,
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

_IDS = struct.Struct(">II")


class _Stage(enum.Enum):
    ADVERTISE = 0
    SHARE = 1
    MASK = 2
    CHECK = 3
    UNMASK = 4
    DONE = 5


class SecAggClient:
    """One client of one aggregation.

    Args:
        client_id: This client's id (one of ``config.client_ids``).
        config: The aggregation's parameters.
        authenticator: Signs this client's keys and checks every other client's against
            ``participants``; ``None`` for anonymous clients (semi-honest server).
        participants: The name of each client in ``config.client_ids`` order.

    Raises:
        SecureAggregationError: An ``authenticator`` is given but the participants are not
            named, once each.
    """

    def __init__(
        self,
        client_id: int,
        config: SecAggConfig,
        *,
        authenticator: KeyAuthenticator | None = None,
        participants: Sequence[str] = (),
    ) -> None:
        check_config(config)
        if client_id not in config.client_ids:
            raise ValueError(f"client_id {client_id} is not among config.client_ids")
        if authenticator is not None and (
            len(participants) != len(config.client_ids) or len(set(participants)) != len(participants)
        ):
            raise SecureAggregationError(
                "the invitation does not name every participant once; an authenticated client "
                "refuses to aggregate with anonymous ones"
            )
        self.client_id = client_id
        self.config = config
        self._authenticator = authenticator
        self._names = dict(zip(config.client_ids, participants, strict=False))
        self._c_key = crypto.generate_private_key()
        self._s_key = crypto.generate_private_key()
        self._seed = os.urandom(crypto.KEY_BYTES)
        self._stage = _Stage.ADVERTISE
        self._directory: dict[int, AdvertiseKeys] = {}
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (share of b_owner, of s_owner)
        self._survivors: tuple[int, ...] = ()  # U3 as signed in the ConsistencyCheck

    def advertise_keys(self) -> AdvertiseKeys:
        """Round 0: this client's public keys ``c_u^PK`` and ``s_u^PK`` (signed when the client
        has an authenticator)."""
        self._advance(_Stage.ADVERTISE)
        advert = AdvertiseKeys(
            session=self.config.session,
            sender=self.client_id,
            c_public=crypto.public_key_bytes(self._c_key),
            s_public=crypto.public_key_bytes(self._s_key),
        )
        if self._authenticator is None:
            return advert
        signature = self._authenticator.sign(signed_keys(advert))
        return replace(advert, signature=signature, certificate=self._authenticator.certificate)

    def share_keys(self, directory: KeyDirectory) -> ShareKeys:
        """Round 1: Shamir-shares ``b_u`` and ``s_u^SK`` among U1, encrypted per recipient."""
        self._advance(_Stage.SHARE)
        self._directory = self._checked_directory(directory)
        owners = sorted(self._directory)
        seed_shares = shamir.split_secret(
            int.from_bytes(self._seed, "big"), threshold=self.config.threshold, xs=owners
        )
        key_secret = int.from_bytes(crypto.private_key_bytes(self._s_key), "big")
        key_shares = shamir.split_secret(key_secret, threshold=self.config.threshold, xs=owners)
        encrypted = []
        for seed_share, key_share in zip(seed_shares, key_shares, strict=True):
            if seed_share.x == self.client_id:
                self._held[self.client_id] = (seed_share.y, key_share.y)
            else:
                encrypted.append(self._encrypt_share(seed_share.x, seed_share.y, key_share.y))
        return ShareKeys(
            session=self.config.session,
            sender=self.client_id,
            shares=tuple(encrypted),
            seed_commitment=crypto.commit(self.config.session, self._seed),
        )

    def masked_input(self, delivery: ShareDelivery, values: np.ndarray) -> MaskedInput:
        """Round 2: stores the shares addressed to this client and masks ``values``.

        Args:
            delivery: The shares sent to this client by the clients of U2.
            values: This client's input, shape ``(config.vector_length,)``, real numbers.

        Raises:
            SecureAggregationError: If a share fails authentication or names the wrong parties,
                fewer than ``threshold`` clients shared, or ``values`` would overflow the ring.
        """
        self._advance(_Stage.MASK)
        require_session(self.config, delivery.session, "share delivery")
        if delivery.recipient != self.client_id:
            raise SecureAggregationError(f"share delivery for client {delivery.recipient}")
        for share in delivery.shares:
            self._store_share(share)
        peers = sorted(set(self._held) - {self.client_id})
        require_quorum("masked input", [self.client_id, *peers], self.config.threshold)
        values = np.asarray(values)
        if values.shape != (self.config.vector_length,):
            raise ValueError(f"values must have shape ({self.config.vector_length},), got {values.shape}")
        code = code_of(self.config)
        masked = encode(values, code, summands=len(self.config.client_ids))
        masked += crypto.prg(self._seed, len(masked), code.dtype)
        for peer in peers:
            mask = crypto.prg(self._mask_key(peer), len(masked), code.dtype)
            if self.client_id < peer:
                masked += mask
            else:
                masked -= mask
        return MaskedInput(
            session=self.config.session,
            sender=self.client_id,
            masked=masked.astype(code.dtype.newbyteorder("<"), copy=False).tobytes(),
        )

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Round 3 without ConsistencyCheck (anonymous clients only): shares of ``b_v`` for
        each survivor v, of ``s_v^SK`` for each drop-out.

        Raises:
            SecureAggregationError: If this client is authenticated (it unmasks only after the
                ConsistencyCheck), or the survivor list is not a subset of U2, omits this
                client, or is smaller than the threshold.
        """
        if self._authenticator is not None:
            raise SecureAggregationError("an authenticated client unmasks only after the consistency check")
        self._advance(_Stage.CHECK)
        self._advance(_Stage.UNMASK)
        return self._reveal(self._checked_survivors(request.session, request.survivors, "unmask request"))

    def sign_survivors(self, check: ConsistencyCheck) -> ConsistencySignature:
        """Round 3 (ConsistencyCheck): this client's signature over the survivor list U3
        (empty when anonymous), after checking the list as ``unmask`` does."""
        self._advance(_Stage.CHECK)
        self._survivors = self._checked_survivors(check.session, check.survivors, "consistency check")
        data = signed_survivors(self.config.session, self._survivors)
        signature = b"" if self._authenticator is None else self._authenticator.sign(data)
        return ConsistencySignature(self.config.session, self.client_id, signature)

    def unmask_signed(self, signed: SignedSurvivors) -> UnmaskResponse:
        """Round 4: reveals this client's shares for the list it signed, once at least ``t``
        survivors signed that same list (signatures are checked when authenticated).

        Raises:
            SecureAggregationError: The list differs from the one this client signed, or
                fewer than ``t`` valid signatures of distinct survivors come with it.
        """
        self._advance(_Stage.UNMASK)
        require_session(self.config, signed.session, "signed survivors")
        if tuple(signed.survivors) != self._survivors:
            raise SecureAggregationError("the signed survivor list differs from the one this client signed")
        data = signed_survivors(self.config.session, self._survivors)
        signers = {entry.sender for entry in signed.signatures if self._signed_by(entry, data)}
        require_quorum("consistency check", signers, self.config.threshold)
        return self._reveal(self._survivors)

    def _signed_by(self, entry: SurvivorSignature, data: bytes) -> bool:
        """Whether ``entry`` is a survivor's valid signature over ``data`` (this client's
        survivor list as signed)."""
        if entry.sender not in self._survivors:
            return False
        if self._authenticator is None:
            return True
        advert = self._directory[entry.sender]
        try:
            self._authenticator.verify(advert.certificate, self._names[entry.sender], data, entry.signature)
        except SecureAggregationError:
            return False
        return True

    def _checked_survivors(self, session: bytes, listed: Sequence[int], what: str) -> tuple[int, ...]:
        require_session(self.config, session, what)
        survivors = tuple(listed)
        if len(set(survivors)) != len(survivors) or not set(survivors) <= self._held.keys():
            raise SecureAggregationError("the survivor list names clients that did not share")
        if self.client_id not in survivors:
            raise SecureAggregationError("asked to unmask although counted as dropped out")
        require_quorum("unmasking", survivors, self.config.threshold)
        return survivors

    def _reveal(self, survivors: tuple[int, ...]) -> UnmaskResponse:
        """Shares of ``b_v`` for each survivor v, of ``s_v^SK`` for every other sharer."""
        seed, key = [], []
        for owner, (seed_y, key_y) in sorted(self._held.items()):
            if owner in survivors:
                seed.append(RevealedShare(owner, shamir.encode_share_value(seed_y)))
            else:
                key.append(RevealedShare(owner, shamir.encode_share_value(key_y)))
        return UnmaskResponse(
            session=self.config.session,
            sender=self.client_id,
            seed_shares=tuple(seed),
            key_shares=tuple(key),
        )

    # ----- helpers -----------------------------------------------------------------------------
    def _advance(self, stage: _Stage) -> None:
        if self._stage is not stage:
            raise SecureAggregationError(
                f"client {self.client_id}: {stage.name.lower()} called at stage "
                f"{self._stage.name.lower()}; each round is answered once, in order"
            )
        self._stage = _Stage(stage.value + 1)

    def _checked_directory(self, directory: KeyDirectory) -> dict[int, AdvertiseKeys]:
        require_session(self.config, directory.session, "key directory")
        keys = {advert.sender: advert for advert in directory.keys}
        if len(keys) != len(directory.keys) or not keys.keys() <= set(self.config.client_ids):
            raise SecureAggregationError("key directory has duplicate or unknown clients")
        if any(advert.session != self.config.session for advert in keys.values()):
            raise SecureAggregationError("key directory holds keys of another session")
        mine = keys.get(self.client_id)
        if mine is None or mine.s_public != crypto.public_key_bytes(self._s_key):
            raise SecureAggregationError("key directory misses or alters this client's keys")
        if len({advert.c_public for advert in keys.values()}) != len(keys):
            raise SecureAggregationError("key directory reuses a public key")
        if self._authenticator is not None:
            for advert in keys.values():
                name = self._names[advert.sender]
                self._authenticator.verify(advert.certificate, name, signed_keys(advert), advert.signature)
        require_quorum("share keys", keys, self.config.threshold)
        return keys

    def _associated(self, sender: int, recipient: int) -> bytes:
        return self.config.session + _IDS.pack(sender, recipient)

    def _share_key(self, peer: int) -> bytes:
        return crypto.agree(
            self._c_key,
            self._directory[peer].c_public,
            session=self.config.session,
            info=crypto.SHARE_KEY_INFO,
        )

    def _mask_key(self, peer: int) -> bytes:
        return crypto.agree(
            self._s_key,
            self._directory[peer].s_public,
            session=self.config.session,
            info=crypto.MASK_KEY_INFO,
        )

    def _encrypt_share(self, recipient: int, seed_y: int, key_y: int) -> EncryptedShare:
        plaintext = (
            _IDS.pack(self.client_id, recipient)
            + shamir.encode_share_value(seed_y)
            + shamir.encode_share_value(key_y)
        )
        associated = self._associated(self.client_id, recipient)
        nonce, ciphertext = crypto.seal(self._share_key(recipient), plaintext, associated)
        return EncryptedShare(self.client_id, recipient, nonce, ciphertext)

    def _store_share(self, share: EncryptedShare) -> None:
        sender = share.sender
        if share.recipient != self.client_id or sender not in self._directory:
            raise SecureAggregationError(f"share from client {sender} is misaddressed")
        if sender in self._held:
            raise SecureAggregationError(f"second share from client {sender}")
        plaintext = crypto.open_sealed(
            self._share_key(sender),
            share.nonce,
            share.ciphertext,
            self._associated(sender, self.client_id),
        )
        size = shamir.SHARE_BYTES
        if len(plaintext) != _IDS.size + 2 * size or plaintext[: _IDS.size] != _IDS.pack(
            sender, self.client_id
        ):
            raise SecureAggregationError(f"share from client {sender} names the wrong parties")
        body = plaintext[_IDS.size :]
        seed_y = shamir.decode_share_value(body[:size])
        key_y = shamir.decode_share_value(body[size:])
        self._held[sender] = (seed_y, key_y)
