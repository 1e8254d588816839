"""The medfed error hierarchy: every error names what a user must fix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medfed.text import printable


class MedfedError(Exception):
    """Base class of every error medfed raises on purpose."""

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles without calling ``__init__`` (whose arguments differ between subclasses), so
        that an error raised in another process (a Ray actor) arrives whole."""
        return _rebuilt, (type(self), self.args, self.__dict__)


class ConfigError(MedfedError):
    """A configuration file or option is invalid."""


class DataError(MedfedError):
    """A site's data cannot be used.

    Args:
        site: The site whose data is wrong (``""`` for a file of no site, e.g. a scan given to
            ``medfed predict``).
        path: The file or folder at fault (``None`` when the whole site is at fault).
        reason: What is wrong and, where possible, how to fix it.
    """

    def __init__(self, site: str, path: Path | str | None, reason: str) -> None:
        self.site = site
        self.path = None if path is None else Path(path)
        self.reason = reason
        where = ([f"site '{site}'"] if site else []) + ([f"file '{path}'"] if path is not None else [])
        super().__init__(f"{', '.join(where)}: {reason}")


class DataProblems(MedfedError):
    """Several problems with a study's data, one line each (see ``raise_problems``)."""

    def __init__(self, problems: Sequence[MedfedError]) -> None:
        self.problems = list(problems)
        lines = "\n".join(str(problem) for problem in self.problems)
        super().__init__(f"{len(self.problems)} problems with the data:\n{lines}")


def raise_problems(problems: Sequence[MedfedError]) -> None:
    """Raises the one problem itself, several as ``DataProblems``; nothing when there are none."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise DataProblems(problems)


class UnknownNameError(MedfedError, KeyError):
    """A registry lookup used a name that is not registered."""

    def __init__(self, kind: str, name: str, valid: list[str]) -> None:
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} '{name}'; valid names: {', '.join(sorted(valid))}")

    def __str__(self) -> str:
        return str(self.args[0])


class CheckpointError(MedfedError):
    """A checkpoint or run directory cannot be read or does not match the configuration."""


class UpdateRejected(MedfedError):
    """A site's update failed validation and was left out of aggregation.

    The site name and the reason are escaped and bounded (``printable``): both may hold text
    the site sent, and both end up in log lines and in the reply to the site.
    """

    def __init__(self, site: str, reason: str) -> None:
        self.site, self.reason = printable(site, 100), printable(reason, 500)
        super().__init__(f"update from site '{self.site}' rejected: {self.reason}")


class PrivacyBudgetExceeded(MedfedError):
    """A site declines to train because the round would take it past its privacy budget.

    Args:
        site: The site that declines.
        spent: Epsilon spent so far.
        would_spend: Epsilon after the declined round.
        budget: The site's epsilon budget (at its delta).
    """

    def __init__(self, site: str, *, spent: float, would_spend: float, budget: float) -> None:
        self.site, self.spent, self.would_spend, self.budget = site, spent, would_spend, budget
        super().__init__(
            f"site '{site}' stops contributing: one more round would spend epsilon "
            f"{would_spend:.3f} > budget {budget:.3f} (spent so far: {spent:.3f})"
        )


class PolicyRefusal(MedfedError):
    """A site refuses work that its own privacy policy does not allow (a job weaker than the
    policy, or a release the policy withholds).

    Args:
        site: The refusing site.
        reasons: Every way the work falls short, each a short phrase.
    """

    def __init__(self, site: str, reasons: list[str]) -> None:
        self.site, self.reasons = site, reasons
        super().__init__(f"site policy: {'; '.join(reasons)}")


def _rebuilt(kind: type[MedfedError], args: tuple[Any, ...], state: dict[str, Any]) -> MedfedError:
    error = Exception.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error
