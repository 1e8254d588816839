"""User-level DP-SGD: the patient, not the training sample, is the privacy unit.

When a patient contributes several training samples (the slices or patches of a 3D volume,
several studies of one patient), sample-level DP-SGD bounds what one *sample* changes, and a
patient with ``k`` samples is protected only by group privacy (about ``k`` times the epsilon).
User-level DP-SGD (McMahan, Ramage, Talwar and Zhang, "Learning Differentially Private
Recurrent Language Models", ICLR 2018, DP-FedAvg with users as the unit; the per-user clipping
of per-example gradients follows Kairouz et al., "Advances and Open Problems in Federated
Learning", 2021, section 4.3.2) instead:

1. Poisson-samples *patients*: each step takes every patient, with all of their samples, with
   probability ``q = expected patients per batch / patients at the site``;
2. sums each patient's per-sample gradients into one gradient per patient
   (``summed_per_patient``);
3. clips each patient's sum to L2 norm ``C`` and adds ``N(0, z^2 C^2)`` to the clipped total.

One patient then moves the released sum by at most ``C``, whatever their number of samples, and
the accountant composes the Poisson-subsampled Gaussian at ``q`` over patients: epsilon is per
patient. With one sample per patient every step is exactly sample-level DP-SGD.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum

import torch
from torch.utils.data import Dataset, Sampler

from medfed.privacy.dp.noise import NoiseSource, PoissonSampler

PATIENT_KEY = "patient"
"""The key of a batch's int64 patient index (one per sample), added by ``PatientIndexed``."""


class PrivacyUnit(StrEnum):
    """What one DP-SGD guarantee protects.

    Attributes:
        PATIENT: Every sample of one patient together (user-level DP; the default).
        SAMPLE: One training sample (slice, patch or case); a patient with several samples is
            protected only by group privacy.
    """

    PATIENT = "patient"
    SAMPLE = "sample"


def patient_groups(patients: Sequence[str]) -> list[list[int]]:
    """The sample indices of each patient, patients in first-seen order.

    Args:
        patients: The patient of each sample, in the dataset's order.
    """
    groups: dict[str, list[int]] = {}
    for index, patient in enumerate(patients):
        groups.setdefault(patient, []).append(index)
    return list(groups.values())


def patient_batch_size(batch_size: int, *, samples: int, patients: int) -> int:
    """Expected patients per Poisson batch so that a batch holds about ``batch_size`` samples:
    ``batch_size * patients / samples``, at least one.

    Raises:
        ValueError: A count is not positive, or there are more patients than samples.
    """
    if batch_size < 1 or patients < 1 or samples < patients:
        raise ValueError(
            f"need batch_size >= 1 and 1 <= patients <= samples, got {batch_size}, {patients}, {samples}"
        )
    return max(1, batch_size * patients // samples)


class PatientPoissonSampler(Sampler[list[int]]):
    """Poisson sampling of patients: each step takes every patient with probability
    ``sample_rate``, independently, and yields the indices of all their samples.

    Args:
        groups: The sample indices of each patient (``patient_groups``).
        sample_rate: ``q``, the probability that a patient joins a batch.
        source: The randomness (the site's own ``NoiseSource``).
        steps: Batches per pass.
    """

    def __init__(
        self, groups: Sequence[Sequence[int]], sample_rate: float, source: NoiseSource, *, steps: int
    ) -> None:
        self.groups = [list(group) for group in groups]
        self.sample_rate = sample_rate
        self.patients = PoissonSampler(len(self.groups), sample_rate, source, steps=steps)

    def __len__(self) -> int:
        return len(self.patients)

    def __iter__(self) -> Iterator[list[int]]:
        for chosen in self.patients:
            yield [index for patient in chosen for index in self.groups[patient]]


class PatientIndexed(Dataset[dict[str, torch.Tensor]]):
    """``dataset``'s samples with their patient's index under ``PATIENT_KEY``.

    Args:
        dataset: The training samples.
        patients: The patient of each sample (any hashable names, e.g. pseudonymised ids).
    """

    def __init__(self, dataset: Dataset, patients: Sequence[str]) -> None:
        if len(patients) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"{len(patients)} patient ids for {len(dataset)} samples")  # type: ignore[arg-type]
        self.dataset = dataset
        number = {patient: index for index, patient in enumerate(dict.fromkeys(patients))}
        self.index = torch.tensor([number[patient] for patient in patients], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**self.dataset[index], PATIENT_KEY: self.index[index]}


def summed_per_patient(grad_sample: torch.Tensor, patient: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients ``(B, ...)`` summed per patient: ``(P, ...)``, one row per distinct
    entry of ``patient`` ``(B,)``, in increasing patient index."""
    distinct, inverse = torch.unique(patient.to(grad_sample.device), sorted=True, return_inverse=True)
    total = torch.zeros(
        (len(distinct), *grad_sample.shape[1:]), dtype=grad_sample.dtype, device=grad_sample.device
    )
    return total.index_add_(0, inverse, grad_sample)


def sample_patients(dataset: Dataset, unit: PrivacyUnit) -> list[str]:
    """The patient of each sample of ``dataset``: its ``patients`` attribute under
    ``PrivacyUnit.PATIENT`` (``CaseDataset`` has one), else each sample its own patient.

    Raises:
        ValueError: ``dataset.patients`` does not hold one id per sample.
    """
    count = len(dataset)  # type: ignore[arg-type]
    patients = getattr(dataset, "patients", None) if unit is PrivacyUnit.PATIENT else None
    if patients is None:
        return [str(index) for index in range(count)]
    if len(patients) != count:
        raise ValueError(f"the dataset names {len(patients)} patients for {count} samples")
    return [str(patient) for patient in patients]
