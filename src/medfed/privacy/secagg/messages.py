"""The messages of secure aggregation, one pair per round (Bonawitz et al. 2017, figure 4).

Every message is a frozen dataclass of bytes and ints, so the same protocol runs in process
(``medfed.privacy.secagg.driver``) and over the network (``medfed.transport.protobuf``
maps each class to its protobuf twin in ``proto/medfed.proto``). Client ids are the Shamir evaluation points ``1..n``.

============  ============================  ==================================
Round         client -> server              server -> client
============  ============================  ==================================
setup                                       ``SecAggInvitation`` (one per client)
0 Advertise   ``AdvertiseKeys``             ``KeyDirectory`` (to all of U1)
1 ShareKeys   ``ShareKeys``                 ``ShareDelivery`` (one per client in U2)
2 Masked      ``MaskedInput``               ``UnmaskRequest`` (to all of U3), or in
                                            deployments ``ConsistencyCheck``
3 Consistency ``ConsistencySignature``      ``SignedSurvivors`` (to U4; deployments)
4 Unmasking   ``UnmaskResponse``            (the server outputs the sum)
============  ============================  ==================================

In deployments each client signs its ``AdvertiseKeys`` with its provisioned key and checks
every other client's signature and certificate, so a server cannot add clients of its own
(the paper's signed round 0), and the server runs the paper's ConsistencyCheck: survivors sign
the list ``U3`` (``ConsistencyCheck`` -> ``ConsistencySignature``) and unmask only on a
``SignedSurvivors`` that carries at least ``t`` valid signatures over the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

from medfed.types import SCHEMA_VERSION


@dataclass(frozen=True)
class SecAggConfig:
    """The parameters of one aggregation, fixed by the server before round 0.

    Attributes:
        session: 16 random bytes naming this aggregation; bound into every derived key.
        client_ids: The invited clients' ids (distinct, >= 1), sorted.
        threshold: Shamir threshold ``t``: shares needed to reconstruct a secret.
        vector_length: Number of elements ``d`` of every input.
        fraction_bits: Fixed-point fraction bits of the encoding.
        ring_bits: Bits of the ring Z_{2^k} (32 or 64).
    """

    session: bytes
    client_ids: tuple[int, ...]
    threshold: int
    vector_length: int
    fraction_bits: int
    ring_bits: int
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class SecAggInvitation:
    """Setup, server -> one client: the aggregation's parameters and the client's own id.

    Attributes:
        config: The aggregation's parameters.
        client_id: The invited client's id.
        participants: The name of each client in ``config.client_ids`` order (deployments:
            the site names their certificates must carry); empty when clients are anonymous.
    """

    config: SecAggConfig
    client_id: int
    participants: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class AdvertiseKeys:
    """Round 0, client -> server: the client's two X25519 public keys.

    Attributes:
        session: The session id.
        sender: The client's id.
        c_public: Public key for encrypting shares (``c_u^PK``).
        s_public: Public key for pairwise masks (``s_u^PK``).
        signature: The client's signature over the two keys with its provisioned key, so that
            other clients know the server invented no participant (empty when anonymous).
        certificate: The client's certificate (PEM) that the signature verifies against.
    """

    session: bytes
    sender: int
    c_public: bytes
    s_public: bytes
    signature: bytes = b""
    certificate: bytes = b""
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class KeyDirectory:
    """Round 0, server -> clients: the keys of every client that advertised (U1)."""

    session: bytes
    keys: tuple[AdvertiseKeys, ...]
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class EncryptedShare:
    """One client's shares of ``b_u`` and ``s_u^SK`` for one recipient, AES-GCM encrypted.

    Attributes:
        sender: The owner ``u`` of the shared secrets.
        recipient: The client ``v`` who can decrypt this.
        nonce: The 12-byte AES-GCM nonce.
        ciphertext: Encrypted ``u || v || share(b_u) || share(s_u^SK)`` with its tag.
    """

    sender: int
    recipient: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class ShareKeys:
    """Round 1, client -> server: encrypted shares for every other client in U1.

    Attributes:
        session: The session id.
        sender: The client's id.
        shares: One encrypted share per other client of U1.
        seed_commitment: SHA-256 commitment to the self-mask seed ``b_u``; lets the server
            verify the seed it reconstructs (never an undetected wrong unmasking).
    """

    session: bytes
    sender: int
    shares: tuple[EncryptedShare, ...]
    seed_commitment: bytes
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ShareDelivery:
    """Round 1, server -> one client: the shares addressed to it by every client in U2."""

    session: bytes
    recipient: int
    shares: tuple[EncryptedShare, ...]
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class MaskedInput:
    """Round 2, client -> server: ``y_u = x_u + PRG(b_u) + sum_v ±PRG(s_uv) mod 2^k``.

    Attributes:
        session: The session id.
        sender: The client's id.
        masked: ``d`` ring elements, little-endian, ``ring_bits / 8`` bytes each.
    """

    session: bytes
    sender: int
    masked: bytes
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class UnmaskRequest:
    """Round 2, server -> clients: who sent a masked input (U3)."""

    session: bytes
    survivors: tuple[int, ...]
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ConsistencyCheck:
    """Round 3 (ConsistencyCheck), server -> clients of U3: the survivors, to be signed."""

    session: bytes
    survivors: tuple[int, ...]
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ConsistencySignature:
    """Round 3, client -> server: the client's signature over the survivor list it was sent
    (empty for an anonymous client)."""

    session: bytes
    sender: int
    signature: bytes
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class SurvivorSignature:
    """One client's signature over the survivor list."""

    sender: int
    signature: bytes


@dataclass(frozen=True)
class SignedSurvivors:
    """Round 4 (Unmasking), server -> clients of U4: the survivor list and its signatures; a
    client unmasks only when at least ``t`` survivors signed the very list it signed."""

    session: bytes
    survivors: tuple[int, ...]
    signatures: tuple[SurvivorSignature, ...]
    schema_version: int = SCHEMA_VERSION


@dataclass(frozen=True)
class RevealedShare:
    """One Shamir share revealed in round 3.

    Attributes:
        owner: The client whose secret this is a share of.
        value: The share's y-value (66 bytes); its x is the revealing client's id.
    """

    owner: int
    value: bytes


@dataclass(frozen=True)
class UnmaskResponse:
    """Round 3, client -> server: shares of ``b_u`` for survivors, of ``s_u^SK`` for drop-outs.

    A client never reveals both kinds of share for the same owner.
    """

    session: bytes
    sender: int
    seed_shares: tuple[RevealedShare, ...]
    key_shares: tuple[RevealedShare, ...]
    schema_version: int = SCHEMA_VERSION
