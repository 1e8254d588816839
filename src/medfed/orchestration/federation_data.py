"""Preparing a simulation's data: each site's train/test split and the unseen site."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from medfed.config.schema import DataConfig
from medfed.data import DEFAULT_SITES, SiteData, generate_federation, load_site, split_cases
from medfed.errors import ConfigError


@dataclass(frozen=True)
class FederationData:
    """Cases of every simulated site, split once for the whole run.

    Attributes:
        train: Each training site's training cases.
        test: Each training site's held-out cases.
        unseen: The site that never trains, used to measure generalisation (or ``None``).
    """

    train: dict[str, SiteData]
    test: dict[str, SiteData]
    unseen: SiteData | None

    @property
    def evaluation_sets(self) -> dict[str, SiteData]:
        """Every held-out set by site name, the unseen site included."""
        sets = dict(self.test)
        if self.unseen is not None:
            sets[self.unseen.name] = self.unseen
        return sets

    def spatial_shape(self) -> tuple[int, int]:
        """``(channels, spatial_dims)`` of the images."""
        image = next(iter(self.train.values())).cases[0].image
        return image.shape[0], image.ndim - 1

    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape (HW[D]) of the first training image."""
        return tuple(next(iter(self.train.values())).cases[0].image.shape[1:])


def prepare_data(config: DataConfig, data_dir: Path, *, seed: int) -> FederationData:
    """Loads (generating the built-in data first when configured) and splits every site."""
    paths = _site_paths(config, data_dir, seed=seed)
    formats = {site.name: site.format for site in config.sites}
    if config.unseen_site is not None and config.unseen_site not in paths:
        raise ConfigError(f"data.unseen_site '{config.unseen_site}' is not one of {sorted(paths)}")
    train, test, unseen = {}, {}, None
    for name, path in paths.items():
        site = load_site(name, path, formats.get(name))
        if name == config.unseen_site:
            unseen = site
            continue
        train[name], test[name] = split_cases(site, config.test_fraction, seed)
    if not train:
        raise ConfigError("data: every site is the unseen site; at least one must train")
    return FederationData(train=train, test=test, unseen=unseen)


def _site_paths(config: DataConfig, data_dir: Path, *, seed: int) -> dict[str, Path]:
    if config.synthetic is None:
        return {site.name: site.path for site in config.sites}
    synthetic = config.synthetic
    sites = [
        replace(site, num_cases=max(2, round(site.num_cases * synthetic.cases_scale)))
        for site in DEFAULT_SITES
    ]
    return generate_federation(
        sites, data_dir, image_size=synthetic.image_size, dims=synthetic.dims, seed=seed
    )
