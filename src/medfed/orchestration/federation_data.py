"""Preparing a simulation's data: each site's train/test split and the unseen site."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from medfed.config.schema import DataConfig
from medfed.data import SiteData, family_sites, generate_federation, load_site, split_cases
from medfed.data.fingerprint import MAX_CLASSES
from medfed.data.realistic import generate_realistic_federation
from medfed.errors import ConfigError, DataError, DataProblems, MedfedError, raise_problems
from medfed.types import Task


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

    def num_classes(self, task: Task) -> int:
        """Classes a model must output: one more than the largest mask value (segmentation) or
        case label (classification) of any site, the unseen one included; at least 2.

        Raises:
            ConfigError: If a value reaches ``MAX_CLASSES``.
        """
        sites = [*self.train.values(), *self.evaluation_sets.values()]
        cases = [case for site in sites for case in site.cases]
        if task == "segmentation":
            largest = max((int(c.mask.max()) for c in cases if c.mask is not None), default=0)
        else:
            largest = max((c.label for c in cases if c.label is not None), default=0)
        if largest >= MAX_CLASSES:
            raise ConfigError(
                f"the data hold class {largest}, more than {MAX_CLASSES - 1}; set "
                "model.params.out_channels if that many classes are meant"
            )
        return max(2, largest + 1)

    def image_shape(self) -> tuple[int, ...]:
        """Spatial shape (HW[D]) of the first training image."""
        return tuple(next(iter(self.train.values())).cases[0].image.shape[1:])


def prepare_data(config: DataConfig, data_dir: Path, *, seed: int) -> FederationData:
    """Loads (generating the built-in data first when configured) and splits every site.

    Raises:
        DataError: The one site that cannot be loaded.
        DataProblems: Several sites that cannot be loaded, one line each.
        ConfigError: The unseen site is unknown or is the only site.
    """
    sites, problems = load_sites(config, data_dir, seed=seed)
    raise_problems(problems)
    return split_sites(config, sites, seed=seed)


def load_sites(
    config: DataConfig, data_dir: Path, *, seed: int
) -> tuple[dict[str, SiteData], list[MedfedError]]:
    """Every site that loads (the built-in data generated first when configured), and the
    errors of each site that does not (one per bad case where the loader can tell), so that
    one check reports every problem."""
    paths = _site_paths(config, data_dir, seed=seed)
    sources = {site.name: site for site in config.sites}
    sites: dict[str, SiteData] = {}
    problems: list[MedfedError] = []
    for name, path in paths.items():
        try:
            source = sources.get(name)
            sites[name] = (
                load_site(name, path, source.format, allow_identified=source.allow_identified)
                if source is not None
                else load_site(name, path)
            )
        except DataProblems as errors:
            problems += errors.problems
        except DataError as error:
            problems.append(error)
    return sites, problems


def split_sites(config: DataConfig, sites: dict[str, SiteData], *, seed: int) -> FederationData:
    """Each training site split into train and test cases; the unseen site kept whole.

    Raises:
        ConfigError: The unseen site is unknown or is the only site.
    """
    if config.unseen_site is not None and config.unseen_site not in sites:
        raise ConfigError(f"data.unseen_site '{config.unseen_site}' is not one of {sorted(sites)}")
    train, test = {}, {}
    for name, site in sites.items():
        if name != config.unseen_site:
            train[name], test[name] = split_cases(site, config.test_fraction, seed)
    if not train:
        raise ConfigError("data: every site is the unseen site; at least one must train")
    unseen = None if config.unseen_site is None else sites[config.unseen_site]
    return FederationData(train=train, test=test, unseen=unseen)


def _site_paths(config: DataConfig, data_dir: Path, *, seed: int) -> dict[str, Path]:
    if config.synthetic is None:
        return {site.name: site.path for site in config.sites}
    synthetic = config.synthetic
    sites = family_sites(synthetic.family, synthetic.cases_scale)
    size, dims, binary = synthetic.image_size, synthetic.dims, synthetic.binary
    if synthetic.realistic:
        return generate_realistic_federation(
            sites, data_dir, image_size=size, dims=dims, seed=seed, binary=binary
        )
    studies = synthetic.studies_per_patient
    return generate_federation(
        sites, data_dir, image_size=size, dims=dims, seed=seed, binary=binary, studies_per_patient=studies
    )
