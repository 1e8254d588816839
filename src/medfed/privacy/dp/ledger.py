"""A site's privacy ledger: every release of its data, saved after each round.

The ledger is the site's own record and is never rolled back with a checkpoint: privacy spent
stays spent. Entries are keyed by the release's seed: a round re-run with the same seed after a
crash replays the identical computation, so it replaces its entry instead of adding one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from medfed.errors import CheckpointError
from medfed.files import atomic_write
from medfed.privacy.dp.accounting import Mechanism

LEDGER_VERSION = 1


@dataclass(frozen=True)
class PrivacyLedger:
    """What a site has released and the DP state it carries between rounds.

    Attributes:
        releases: Mechanism of each release by key (the training seed of the round).
        noise_multiplier: The noise multiplier fixed at the first round (``None`` before).
        clip: The current clipping threshold (L2 norm of a per-sample gradient).
    """

    releases: dict[str, Mechanism] = field(default_factory=dict)
    noise_multiplier: float | None = None
    clip: float | None = None

    def history(self, *, excluding: str | None = None) -> list[Mechanism]:
        """Every release's mechanism, optionally leaving out the release ``excluding``."""
        return [mechanism for key, mechanism in self.releases.items() if key != excluding]

    def recorded(self, key: str, mechanism: Mechanism, clip: float | None) -> PrivacyLedger:
        """This ledger with release ``key`` set to ``mechanism`` and the threshold ``clip``."""
        return replace(self, releases={**self.releases, key: mechanism}, clip=clip)

    def to_json(self) -> str:
        """The ledger as JSON text."""
        return json.dumps(
            {
                "version": LEDGER_VERSION,
                "noise_multiplier": self.noise_multiplier,
                "clip": self.clip,
                "releases": {
                    key: [m.noise_multiplier, m.sample_rate, m.steps]
                    for key, m in self.releases.items()
                },
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> PrivacyLedger:
        """Reads ``to_json``'s output; raises ``CheckpointError`` on another version."""
        data = json.loads(text)
        if data.get("version") != LEDGER_VERSION:
            raise CheckpointError(f"privacy ledger version {data.get('version')}, expected {LEDGER_VERSION}")
        releases = {
            key: Mechanism(float(z), float(q), int(steps)) for key, (z, q, steps) in data["releases"].items()
        }
        return cls(releases=releases, noise_multiplier=data["noise_multiplier"], clip=data["clip"])


def load_ledger(path: Path | None) -> PrivacyLedger:
    """The ledger saved at ``path``, or an empty one when there is none yet."""
    if path is None or not path.exists():
        return PrivacyLedger()
    try:
        return PrivacyLedger.from_json(path.read_text())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"cannot read privacy ledger '{path}': {error}") from error


def save_ledger(path: Path | None, ledger: PrivacyLedger) -> None:
    """Writes ``ledger`` to ``path`` atomically (nothing when ``path`` is ``None``)."""
    if path is not None:
        atomic_write(path, ledger.to_json().encode())
