"""Errors of the transport layer."""

from __future__ import annotations

from medfed.errors import MedfedError


class TransportError(MedfedError):
    """A message could not be sent, received or understood."""


class PayloadError(TransportError):
    """Bytes received from a peer are malformed, truncated, oversized or inconsistent."""


class AuthenticationError(TransportError):
    """A peer's identity is unknown, or its certificate is revoked, expired or foreign."""


class ServerBusy(TransportError):
    """A caller asked for more than the server grants it (calls, uploads or upload memory)."""
