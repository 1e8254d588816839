"""The sites' training batches the attack targets: synthetic brain MRI from ``medfed.data``.

Each site's batch is generated with ``generate_site``, read back with ``load_site`` and
normalised with ``build_dataset`` exactly as medfed's trainer would see it (zero mean, unit
variance over the head, no augmentation), so the attacked gradient is a realistic one.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from medfed.data import DEFAULT_SITES, SyntheticSite, build_dataset, generate_site, load_site


@dataclass(frozen=True)
class SiteBatch:
    """One site's training batch.

    Attributes:
        site: The site's name.
        images: float32 ``(B, 1, S, S)`` normalised images.
        labels: int64 ``(B,)`` classes (1 = the case has a lesion).
    """

    site: str
    images: torch.Tensor
    labels: torch.Tensor


def synthetic_batches(*, num_sites: int, batch_size: int, image_size: int, seed: int) -> list[SiteBatch]:
    """One batch per site, from ``DEFAULT_SITES`` in order (cycled, renamed beyond four sites).

    Args:
        num_sites: Number of sites; the first is the attacked site.
        batch_size: Cases per site.
        image_size: Side ``S`` of the images (>= 16).
        seed: Seed of the synthetic federation.

    Raises:
        ValueError: If an argument is out of range.
    """
    if num_sites < 1 or batch_size < 1:
        raise ValueError(f"num_sites and batch_size must be >= 1, got {num_sites}, {batch_size}")
    with tempfile.TemporaryDirectory(prefix="medfed-attack-") as folder:
        return [
            _site_batch(_site_spec(index, batch_size), Path(folder), image_size, seed)
            for index in range(num_sites)
        ]


def _site_spec(index: int, batch_size: int) -> SyntheticSite:
    """Site ``index``: a default site with ``batch_size`` cases, suffixed after the first cycle."""
    base = DEFAULT_SITES[index % len(DEFAULT_SITES)]
    cycle = index // len(DEFAULT_SITES)
    name = base.name if cycle == 0 else f"{base.name}_{cycle}"
    return dataclasses.replace(base, name=name, num_cases=batch_size)


def _site_batch(spec: SyntheticSite, folder: Path, image_size: int, seed: int) -> SiteBatch:
    """Generates, loads and normalises one site's batch."""
    path = generate_site(spec, folder, image_size=image_size, seed=seed)
    cases = load_site(spec.name, path).cases
    dataset = build_dataset(cases, task="classification", augment=False, seed=seed, site=spec.name)
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([s["image"] for s in samples])
    labels = torch.stack([s["label"] for s in samples]).reshape(-1)
    return SiteBatch(spec.name, images, labels)
