"""A site's privacy ledger: an append-only record of every release of one dataset.

One ledger per site dataset, shared by every job that trains on that data: the budget protects
the site's patients, whichever job spends it. The file is JSON lines, one entry per line, and
only ever grows; nothing is replaced or deleted, so earlier content is always a prefix of later
content. Two kinds of entry:

- ``release``: one round of DP-SGD, with a unique id (uuid4), time, job, seed, mechanism
  ``(z, q, steps)``, clipping threshold, the site's budget and accountant at the time, and the
  privacy unit (``patient``: ``q`` is over patients and epsilon is per patient; ``sample``, also
  read for entries written before medfed recorded it: per training sample, which is per patient
  only where each patient had one sample). It is written (and fsynced) *before* the round
  trains, under an exclusive lock together with the budget check: a round that crashes after
  it is charged; a retried or replayed round is charged again. Only a round that never reached
  its entry (so never trained) is free.
- ``clip``: the adaptive clipping threshold a job carries to its next round (no privacy cost:
  it is computed from the round's already charged noisy count).

A job's calibrated noise multiplier is the one of its first release. Version-1 ledgers
(``<site>.json``, keyed by seed) are refused with a ``CheckpointError``: they could under-count.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medfed.data.cases import SiteData
from medfed.errors import CheckpointError
from medfed.privacy.dp.accounting import Accountant, Budget, Mechanism, epsilon_spent
from medfed.privacy.dp.patients import PrivacyUnit

LEDGER_VERSION = 2


@dataclass(frozen=True)
class Release:
    """One charged round of DP-SGD on the site's data.

    Attributes:
        id: Unique id of the release (uuid4 hex).
        time: When it was charged (epoch seconds).
        job: The job that trained (fingerprint or name).
        seed: The round's training seed (for the record only: never a key).
        mechanism: What the accountant composes.
        clip: The clipping threshold ``C`` of the round.
        budget: The site's budget when it was charged.
        accountant: The accountant that checked it.
        unit: What its epsilon protects: a patient, or one training sample.
    """

    id: str
    time: float
    job: str
    seed: int
    mechanism: Mechanism
    clip: float
    budget: Budget
    accountant: Accountant
    unit: PrivacyUnit = PrivacyUnit.SAMPLE


@dataclass(frozen=True)
class PrivacyLedger:
    """Every release of one dataset and the clipping thresholds jobs carry between rounds.

    Attributes:
        releases: Every release, in the order charged.
        clips: The latest adaptive clipping threshold of each job.
    """

    releases: tuple[Release, ...] = ()
    clips: dict[str, float] = field(default_factory=dict)

    def history(self) -> list[Mechanism]:
        """Every release's mechanism: what the site has spent, across all jobs."""
        return [release.mechanism for release in self.releases]

    def epsilon(self) -> float:
        """Epsilon spent by every release, at the latest release's delta and accountant."""
        if not self.releases:
            return 0.0
        latest = self.releases[-1]
        return epsilon_spent(self.history(), delta=latest.budget.delta, accountant=latest.accountant)

    def noise_multiplier(self, job: str) -> float | None:
        """The noise multiplier of ``job``'s first release (``None`` before it has one)."""
        return next((r.mechanism.noise_multiplier for r in self.releases if r.job == job), None)

    def clip(self, job: str) -> float | None:
        """The clipping threshold ``job`` carries to its next round (``None``: not adapted yet)."""
        return self.clips.get(job)

    def with_entry(self, entry: Mapping[str, Any]) -> PrivacyLedger:
        """This ledger with ``entry`` (a ``release_entry`` or ``clip_entry``) appended."""
        if entry["kind"] == "release":
            mechanism = Mechanism(
                float(entry["noise_multiplier"]), float(entry["sample_rate"]), int(entry["steps"])
            )
            release = Release(
                str(entry["id"]),
                float(entry["time"]),
                str(entry["job"]),
                int(entry["seed"]),
                mechanism,
                float(entry["clip"]),
                Budget(float(entry["epsilon_budget"]), float(entry["delta"])),
                Accountant(entry["accountant"]),
                PrivacyUnit(entry.get("unit", PrivacyUnit.SAMPLE)),
            )
            return replace(self, releases=(*self.releases, release))
        if entry["kind"] == "clip":
            return replace(self, clips={**self.clips, str(entry["job"]): float(entry["clip"])})
        raise ValueError(f"unknown entry kind {entry['kind']!r}")


def release_entry(
    *,
    job: str,
    seed: int,
    mechanism: Mechanism,
    clip: float,
    budget: Budget,
    accountant: Accountant,
    unit: PrivacyUnit,
) -> dict[str, Any]:
    """A new ``release`` entry with a fresh unique id."""
    return _entry(
        "release",
        job,
        seed=seed,
        noise_multiplier=mechanism.noise_multiplier,
        sample_rate=mechanism.sample_rate,
        steps=mechanism.steps,
        clip=clip,
        epsilon_budget=budget.epsilon,
        delta=budget.delta,
        accountant=accountant.value,
        unit=unit.value,
    )


def clip_entry(*, job: str, clip: float) -> dict[str, Any]:
    """A new ``clip`` entry: ``job``'s threshold for its next round."""
    return _entry("clip", job, clip=clip)


def _entry(kind: str, job: str, **fields: Any) -> dict[str, Any]:
    """A new entry of ``kind`` for ``job``: version, a fresh unique id, the time, then ``fields``."""
    return {
        "version": LEDGER_VERSION,
        "kind": kind,
        "id": uuid.uuid4().hex,
        "time": time.time(),
        "job": job,
        **fields,
    }


def parse_ledger(text: str, *, source: str = "privacy ledger") -> PrivacyLedger:
    """The ledger whose JSON lines are ``text``.

    Raises:
        CheckpointError: A line is not a valid entry of this version, or the last line is
            incomplete (a write was interrupted: inspect the file, medfed does not guess).
    """
    if text and not text.endswith("\n"):
        raise CheckpointError(f"{source}: the last line is incomplete (an interrupted write); inspect it")
    ledger = PrivacyLedger()
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
            if entry.get("version") != LEDGER_VERSION:
                raise ValueError(f"version {entry.get('version')}, expected {LEDGER_VERSION}")
            ledger = ledger.with_entry(entry)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{source}, line {number}: not a ledger entry: {error}") from error
    return ledger


def load_ledger(path: Path | None) -> PrivacyLedger:
    """The ledger saved at ``path``, or an empty one when there is none yet."""
    if path is None or not path.exists():
        return PrivacyLedger()
    try:
        text = path.read_text()
    except OSError as error:
        raise CheckpointError(f"cannot read privacy ledger '{path}': {error}") from error
    return parse_ledger(text, source=f"privacy ledger '{path}'")


@contextlib.contextmanager
def locked(path: Path | None) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (created if missing) so that reading the ledger,
    checking the budget and appending happen as one step, even with several jobs at a site."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_entry(path: Path | None, entry: Mapping[str, Any]) -> None:
    """Appends ``entry`` as one line to ``path`` and waits until it is on disk (nothing when
    ``path`` is ``None``)."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def site_ledgers(state_dir: Path) -> dict[str, PrivacyLedger]:
    """Every dataset ledger of a site's ``--state-dir`` (``privacy/*.jsonl``), by file name."""
    return {path.name: load_ledger(path) for path in sorted((state_dir / "privacy").glob("*.jsonl"))}


def ledger_file(directory: Path, data: SiteData) -> Path:
    """The ledger of ``data`` in ``directory``: ``<site>-<fingerprint>.jsonl``, where the
    fingerprint hashes the site's name and every case's id and resolved source, so every job on
    the same cases (whatever its split, seed or holdout) shares one ledger.

    Raises:
        CheckpointError: ``directory`` holds a version-1 ledger ``<site>.json``, whose releases
            were keyed by seed and may be under-counted; move it aside once its spend is noted.
    """
    legacy = directory / f"{data.name}.json"
    if legacy.exists():
        raise CheckpointError(
            f"'{legacy}' is a version-1 privacy ledger (releases keyed by seed, which could replace "
            "one another); medfed no longer reads it. Note its spend, move it out of the folder and "
            "lower this site's budget by that spend"
        )
    digest = hashlib.sha256(data.name.encode())
    for case in sorted(data.cases, key=lambda case: case.case_id):
        digest.update(f"\0{case.case_id}\0{case.source.resolve()}".encode())
    return directory / f"{data.name}-{digest.hexdigest()[:16]}.jsonl"
