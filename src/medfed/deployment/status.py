"""``status.json`` in the server's state directory: what ``medfed status`` shows."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medfed.errors import ConfigError
from medfed.files import atomic_write

STATUS_FILE = "status.json"
HISTORY_LENGTH = 20


@dataclass(frozen=True)
class RoundSummary:
    """One completed round: who took part and their mean training metrics."""

    round: int
    sites: list[str]
    metrics: dict[str, float]


@dataclass(frozen=True)
class ServerStatus:
    """A snapshot of a running (or finished) server.

    Attributes:
        job: The job's name.
        port: The port the server listens on.
        completed_rounds: Rounds completed (and checkpointed).
        total_rounds: Rounds of the job.
        running_round: The round in progress, or ``None``.
        waiting_for: Sites asked in the running round that have not answered yet.
        connected: Sites heard from within the last two poll periods.
        declined: Each site's latest decline, ``"round <r>: <reason>"`` (e.g. its privacy
            policy refuses the job).
        rejected: Each site's latest refused answer, ``"round <r>: <reason>"`` (it failed
            validation, or was unreadable).
        finished: Whether the job is done.
        history: The latest completed rounds, oldest first.
        updated: When this snapshot was taken (epoch seconds).
    """

    job: str
    port: int
    completed_rounds: int
    total_rounds: int
    running_round: int | None = None
    waiting_for: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    declined: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    history: list[RoundSummary] = field(default_factory=list)
    updated: float = field(default_factory=time.time)


def summarise(round: int, sites: Sequence[str], metrics: Sequence[Mapping[str, float]]) -> RoundSummary:
    """The mean of each metric over the sites of a round."""
    names = sorted({name for row in metrics for name in row})
    means = {
        name: sum(row[name] for row in metrics if name in row) / sum(name in row for row in metrics)
        for name in names
    }
    return RoundSummary(round=round, sites=sorted(sites), metrics=means)


def write_status(state_dir: Path, status: ServerStatus) -> None:
    """Writes ``status`` atomically to ``state_dir/status.json``."""
    atomic_write(state_dir / STATUS_FILE, json.dumps(asdict(status), indent=2).encode())


def read_status(state_dir: Path) -> ServerStatus:
    """Reads the status a server wrote; raises ``ConfigError`` when there is none."""
    try:
        data = json.loads((Path(state_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"no server status in '{state_dir}': {error}") from None
    data["history"] = [RoundSummary(**row) for row in data.get("history", [])]
    return ServerStatus(**data)
