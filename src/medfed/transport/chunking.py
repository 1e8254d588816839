"""Splitting payloads into chunks and putting them back together, with size and digest checks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from medfed.transport.errors import PayloadError

CHUNK_BYTES = 4 * 1024 * 1024
"""Data bytes per stream message (4 MiB), well under gRPC's message limit."""


def split(data: bytes, size: int = CHUNK_BYTES) -> Iterator[memoryview]:
    """Views of ``data`` in consecutive pieces of at most ``size`` bytes (one empty piece for
    no data); nothing is copied."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    view = memoryview(data)
    for start in range(0, max(len(data), 1), size):
        yield view[start : start + size]


def digest(data: bytes) -> bytes:
    """The SHA-256 digest that travels in a stream's header."""
    return hashlib.sha256(data).digest()


class Reassembler:
    """Collects a payload's chunks, refusing more bytes than declared or allowed.

    Args:
        total_bytes: Length declared in the stream's header.
        sha256: Digest declared in the stream's header.
        limit: Largest payload accepted, in bytes.

    Raises:
        PayloadError: The declared length exceeds ``limit``.
    """

    def __init__(self, *, total_bytes: int, sha256: bytes, limit: int) -> None:
        if total_bytes > limit:
            raise PayloadError(f"payload of {total_bytes} bytes exceeds the limit of {limit}")
        self.total_bytes = total_bytes
        self.sha256 = sha256
        self._parts: list[bytes | memoryview] = []
        self._received = 0

    def add(self, chunk: bytes | memoryview) -> None:
        """Appends one chunk; raises ``PayloadError`` when it overflows the declared length."""
        self._received += len(chunk)
        if self._received > self.total_bytes:
            raise PayloadError(f"more than the declared {self.total_bytes} bytes arrived")
        self._parts.append(chunk)

    def finish(self) -> bytes:
        """The whole payload; raises ``PayloadError`` when it is truncated or its digest differs."""
        if self._received != self.total_bytes:
            raise PayloadError(f"truncated: {self._received} of {self.total_bytes} bytes arrived")
        data = b"".join(self._parts)
        self._parts.clear()
        if digest(data) != self.sha256:
            raise PayloadError("SHA-256 digest of the payload does not match its header")
        return data
