"""Signed keys and survivor lists: how clients know the server invented no participant and
told every survivor the same story.

Bonawitz et al. 2017 (section 6, malicious server): a server that adds clients of its own to
the key directory receives shares of every honest client's secrets through them, and with
enough of them unmasks a single honest input. Each client therefore signs its advertised
keys with a long-term key that a PKI vouches for, and checks the signature and certificate of
every other client in the directory against the name the invitation gives it. In a deployment
the PKI is the project CA of ``medfed provision``; ``medfed.deployment.site_identity`` adapts it.
In the ConsistencyCheck the survivors sign the survivor list, and a client reveals its shares
only when ``t`` of them signed the list it signed.
"""

from __future__ import annotations

import struct
from typing import Protocol

from medfed.privacy.secagg.messages import AdvertiseKeys

_KEYS_CONTEXT = b"medfed/secagg/v1/advertise-keys"
_SURVIVORS_CONTEXT = b"medfed/secagg/v1/survivors"


class KeyAuthenticator(Protocol):
    """A client's long-term identity: signs its keys, checks other clients' signed keys."""

    @property
    def certificate(self) -> bytes:
        """This client's certificate (PEM), sent with its keys."""
        ...

    def sign(self, data: bytes) -> bytes:
        """This client's signature over ``data``."""
        ...

    def verify(self, certificate: bytes, name: str, data: bytes, signature: bytes) -> None:
        """Raises ``SecureAggregationError`` unless ``certificate`` is a valid certificate of
        the client ``name`` and ``signature`` is its signature over ``data``."""
        ...


def signed_keys(advert: AdvertiseKeys) -> bytes:
    """The bytes a client signs: context, session, sender and both public keys."""
    return b"".join(
        (_KEYS_CONTEXT, advert.session, struct.pack(">I", advert.sender), advert.c_public, advert.s_public)
    )


def signed_survivors(session: bytes, survivors: tuple[int, ...]) -> bytes:
    """The bytes a survivor signs in the ConsistencyCheck: context, session and the list U3."""
    return b"".join((_SURVIVORS_CONTEXT, session, struct.pack(f">{len(survivors)}I", *survivors)))
