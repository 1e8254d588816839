"""How the round loop reaches sites: the interface, and the in-process implementation."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from medfed.errors import PrivacyBudgetExceeded
from medfed.orchestration.site import LocalSite
from medfed.types import TrainResult, TrainTask

logger = logging.getLogger(__name__)


class SiteConnector(Protocol):
    """Delivers tasks to sites and collects their results.

    Implementations decide how sites are reached (in process, gRPC). A site that drops out or
    misses the deadline is simply absent from the returned list.
    """

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        """Runs each site's task and returns the results that arrived."""
        ...


class InProcessConnector:
    """Runs simulated sites one after another in this process.

    Args:
        sites: The simulated sites by name.
        on_site_done: Called with each site's name after it trained (e.g. to advance a progress bar).
    """

    def __init__(
        self,
        sites: Mapping[str, LocalSite],
        on_site_done: Callable[[str], None] | None = None,
    ) -> None:
        self.sites = dict(sites)
        self.on_site_done = on_site_done

    def train(self, tasks: Mapping[str, TrainTask]) -> list[TrainResult]:
        results = []
        for name, task in tasks.items():
            try:
                results.append(self.sites[name].train(task))
            except PrivacyBudgetExceeded as declined:  # the site's own decision: a drop-out
                logger.warning("round %d: %s", task.round, declined)
            if self.on_site_done is not None:
                self.on_site_done(name)
        return results
