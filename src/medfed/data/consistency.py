"""Checks across the sites of a study, and of the sites against the model: every problem is one
``DataError`` naming the site and a file, collected rather than raised, so that one check
reports them all. (Each site's own cases were checked against each other when it was loaded.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from medfed.data.cases import Case, SiteData
from medfed.errors import DataError
from medfed.types import Task


@dataclass(frozen=True)
class ModelInputs:
    """What the model takes and gives, where the configuration fixes it (``None``: from the data).

    Attributes:
        in_channels: Image channels.
        spatial_dims: 2 or 3.
        classes: Output classes (segmentation: mask values ``0..classes-1``).
    """

    in_channels: int | None = None
    spatial_dims: int | None = None
    classes: int | None = None


def study_problems(sites: Mapping[str, SiteData], *, task: Task, model: ModelInputs) -> list[DataError]:
    """Every disagreement between sites, or between a site and the model: mixed 2D and 3D,
    different channels, one class value declared under different names, no masks (labels)
    for the task, class values the model cannot output.

    Args:
        sites: The loaded sites by name; the first is the reference for channels and
            dimensionality, the first that declares classes for their names.
        task: Which target is checked against ``model.classes``: masks or case labels.
        model: What the configuration fixes about the model.

    Returns:
        The problems, at most one per site and kind.
    """
    problems: list[DataError] = []
    reference = next(iter(sites.values()), None)
    named = next((site for site in sites.values() if site.classes is not None), None)
    for site in sites.values():
        case = site.cases[0]
        reasons = input_problems(case.image.shape[0], case.image.ndim - 1, model, reference)
        problems += [DataError(site.name, case.source, reason) for reason in reasons]
        for problem in (_class_names(site, named), _targets(site, task)):
            if problem is not None:
                problems.append(problem)
        problem = class_problem(site, task, model.classes)
        if problem is not None:
            problems.append(problem)
    return problems


def input_problems(
    channels: int, dims: int, model: ModelInputs, reference: SiteData | None = None
) -> list[str]:
    """Why images of ``channels`` channels and ``dims`` spatial dimensions do not fit: the
    ``model`` where it fixes the value, else the images of the ``reference`` site (if any).

    Returns:
        One reason per mismatch (dimensionality first, then channels); empty when they fit.
    """
    reasons = []
    if model.spatial_dims is not None:
        if dims != model.spatial_dims:
            reasons.append(f"images are {dims}D, the model is {model.spatial_dims}D")
    elif reference is not None and dims != (expected := reference.cases[0].image.ndim - 1):
        reasons.append(
            f"images are {dims}D, those of site '{reference.name}' {expected}D; every site needs the same"
        )
    if model.in_channels is not None:
        if channels != model.in_channels:
            reasons.append(f"images have {channels} channels, the model takes {model.in_channels}")
    elif reference is not None and channels != (expected := reference.cases[0].image.shape[0]):
        reasons.append(
            f"images have {channels} channels, those of site '{reference.name}' {expected}; "
            "every site needs the same channels in the same order"
        )
    return reasons


def held_out_problem(site: SiteData, remedy: str) -> DataError | None:
    """A site with one case has nothing to hold out for testing.

    Args:
        site: A site that trains and is evaluated on its held-out cases.
        remedy: How to fix it in the caller's terms (e.g. ``"or set --holdout 0"``).
    """
    if len(site.cases) != 1:
        return None
    case = site.cases[0]
    reason = f"site has only 1 case ('{case.case_id}'), so none is held out to test on; add cases {remedy}"
    return DataError(site.name, case.source, reason)


def client_problems(site: SiteData, holdout: float) -> list[DataError]:
    """What ``medfed client`` checks of its site's data once loaded (as ``medfed check-data
    --data`` does): with a ``holdout`` fraction above 0, a case to hold out."""
    problem = held_out_problem(site, "or set medfed client --holdout 0") if holdout > 0 else None
    return [] if problem is None else [problem]


def class_problem(site: SiteData, task: Task, classes: int | None) -> DataError | None:
    """The first case whose mask value (segmentation) or label (classification) the model
    cannot output, with the count of such cases."""
    if classes is None:
        return None
    beyond = [case for case in site.cases if _largest_class(case, task) >= classes]
    if not beyond:
        return None
    case, what = beyond[0], "mask value" if task == "segmentation" else "label"
    more = f" (and {len(beyond) - 1} more cases)" if len(beyond) > 1 else ""
    reason = (
        f"case '{case.case_id}' has {what} {_largest_class(case, task)}{more}, but the model outputs "
        f"{classes} classes (0..{classes - 1}); fix the data or set model.params.out_channels"
    )
    return DataError(site.name, case.source, reason)


def _largest_class(case: Case, task: Task) -> int:
    """The largest mask value or the label of a case; -1 without one."""
    if task == "segmentation":
        return -1 if case.mask is None else int(case.mask.max())
    return -1 if case.label is None else case.label


def _targets(site: SiteData, task: Task) -> DataError | None:
    """A site without what the task learns from: masks (segmentation) or case labels."""
    case = site.cases[0]  # a loaded site's cases all have a mask (label), or none has
    if task == "segmentation" and case.mask is None:
        reason = "site has no masks, which segmentation needs (for classification, set task: classification)"
        return DataError(site.name, case.source, reason)
    if task == "classification" and case.label is None:
        reason = (
            "site has no case labels, which classification needs (labels.csv, or 'class' in dataset.json)"
        )
        return DataError(site.name, case.source, reason)
    return None


def _class_names(site: SiteData, reference: SiteData | None) -> DataError | None:
    """A class value that ``site`` declares under another name than ``reference`` does."""
    if site.classes is None or reference is None or reference.classes is None:
        return None
    theirs = reference.classes
    for value, name in sorted(site.classes.items()):
        if value in theirs and name.strip().lower() != theirs[value].strip().lower():
            reason = (
                f"dataset.json 'labels' call value {value} '{name}', site '{reference.name}' calls it "
                f"'{theirs[value]}'; one value must mean one class at every site (relabel the masks)"
            )
            return DataError(site.name, None, reason)
    return None
