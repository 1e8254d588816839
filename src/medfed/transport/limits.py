"""What one site may take of the server: concurrent calls, concurrent uploads, upload memory and
time between messages. Every limit holds per site, so a stalling or flooding site cannot delay
or starve the others."""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from medfed.transport.errors import ServerBusy

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter
TRIM_THRESHOLD_BYTES = 1024 * 1024
"""Free memory at the top of a heap beyond which glibc hands it back to the OS."""


@dataclass(frozen=True)
class ServerLimits:
    """The server's bounds on what callers may hold.

    Attributes:
        calls_per_site: Calls one site may have open at once (an honest site has one); more
            are refused at once with ``RESOURCE_EXHAUSTED``.
        uploads_per_site: Answers one site may be uploading at once; more are refused.
        upload_bytes: Declared bytes of all uploads being received at once, all sites together.
            An upload that does not fit waits up to half ``read_timeout_s`` and is then refused; one
            upload is always admitted when none is running, whatever its size.
        read_timeout_s: Longest silence of a caller in the middle of a call (no next chunk
            arrives, or it takes none of what the server sends); the call is then cancelled.
        spare_workers: Server threads beyond ``calls_per_site`` per site, for callers that
            are being identified or refused.
    """

    calls_per_site: int = 4
    uploads_per_site: int = 2
    upload_bytes: int = 2 * 1024**3
    read_timeout_s: float = 30.0
    spare_workers: int = 8

    def __post_init__(self) -> None:
        if min(self.calls_per_site, self.uploads_per_site, self.upload_bytes, self.spare_workers) < 1:
            raise ValueError(f"every count and size limit must be at least 1, got {self}")
        if not self.read_timeout_s > 0:
            raise ValueError(f"read_timeout_s must be positive, got {self.read_timeout_s}")

    def workers(self, sites: int) -> int:
        """Server threads for ``sites`` sites: enough for each to hold all its calls at once."""
        return self.calls_per_site * sites + self.spare_workers


class Admission:
    """Counts each site's open calls and uploads, and the bytes being uploaded; refuses what
    exceeds ``limits`` with ``ServerBusy``. Thread-safe."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self._lock = threading.Condition()
        self._calls: Counter[str] = Counter()
        self._uploads: Counter[str] = Counter()
        self._bytes = 0

    def open_calls(self, site: str) -> int:
        """How many calls ``site`` has open now."""
        with self._lock:
            return self._calls[site]

    @contextmanager
    def call(self, site: str) -> Iterator[None]:
        """Holds one of ``site``'s call slots for the ``with`` block."""
        with self._lock:
            if self._calls[site] >= self.limits.calls_per_site:
                raise ServerBusy(f"site '{site}' already has {self._calls[site]} calls open")
            self._calls[site] += 1
        try:
            yield
        finally:
            with self._lock:
                self._calls[site] -= 1

    @contextmanager
    def upload(self, site: str, size: int) -> Iterator[None]:
        """Holds an upload slot of ``site`` and ``size`` bytes of the shared budget."""
        with self._lock:
            if self._uploads[site] >= self.limits.uploads_per_site:
                raise ServerBusy(f"site '{site}' already has {self._uploads[site]} uploads running")

            def fits() -> bool:
                return self._bytes == 0 or self._bytes + size <= self.limits.upload_bytes

            if not self._lock.wait_for(fits, timeout=self.limits.read_timeout_s / 2):
                raise ServerBusy(f"{self._bytes} bytes of uploads are being received; try again later")
            self._uploads[site] += 1
            self._bytes += size
        try:
            yield
        finally:
            with self._lock:
                self._uploads[site] -= 1
                self._bytes -= size
                self._lock.notify_all()


class Watchdog:
    """Cancels calls whose peer stays silent for longer than ``timeout_s``.

    One thread checks the watched calls every ``tick_s``; it runs only while calls are watched.

    Args:
        timeout_s: Longest silence, in seconds.
        tick_s: How often deadlines are checked, in seconds.
    """

    def __init__(self, timeout_s: float, *, tick_s: float = 0.25) -> None:
        self.timeout_s, self.tick_s = timeout_s, tick_s
        self._lock = threading.Lock()
        self._deadlines: dict[object, tuple[float, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, cancel: Callable[[], None]) -> Iterator[Callable[[], None]]:
        """Watches a call for the ``with`` block; yields ``renew``, to be called whenever the
        peer shows life. ``cancel`` is called (from the watchdog's thread) when it does not."""
        key = object()

        def renew() -> None:
            with self._lock:
                self._deadlines[key] = (time.monotonic() + self.timeout_s, cancel)

        renew()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="medfed-watchdog", daemon=True)
                self._thread.start()
        try:
            yield renew
        finally:
            with self._lock:
                self._deadlines.pop(key, None)

    def _run(self) -> None:
        running = True
        while running:
            time.sleep(self.tick_s)
            now = time.monotonic()
            with self._lock:
                expired = {
                    key: cancel for key, (deadline, cancel) in self._deadlines.items() if deadline < now
                }
                for key in expired:
                    del self._deadlines[key]
                running = bool(self._deadlines)
                if not running:
                    self._thread = None
            for cancel in expired.values():
                cancel()


def return_freed_memory() -> bool:
    """Makes glibc's ``malloc`` give freed memory back to the OS beyond ``TRIM_THRESHOLD_BYTES``
    (a fixed threshold also stops glibc from raising its threshold for serving large buffers
    from the heap), so that a burst of uploads does not leave the server hundreds of MiB larger.
    Process-wide; call it once in a server process.

    Returns:
        Whether it took effect (``False`` where the C library is not glibc).
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return mallopt is not None and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
