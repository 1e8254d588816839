"""Pydantic schema of ``medfed simulate``'s YAML. Unknown keys and bad values are rejected with
the field named; every default gives the built-in demo."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SITE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticDataConfig(_Strict):
    """The built-in multi-site generator (see ``medfed.data.synthetic``)."""

    image_size: int = Field(64, ge=16, le=512)
    dims: Literal[2, 3] = 2
    cases_scale: float = Field(1.0, gt=0, description="Multiplies every site's number of cases.")


class SiteSourceConfig(_Strict):
    """One site's real data on disk."""

    name: str
    path: Path
    format: Literal["msd", "dicom", "png", "npz"] | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _SITE_NAME.fullmatch(name):
            raise ValueError(f"site name '{name}' may use only letters, digits, '_', '.', '-'")
        return name


class DataConfig(_Strict):
    """Where each site's data comes from, and how it is split."""

    synthetic: SyntheticDataConfig | None = SyntheticDataConfig()
    sites: list[SiteSourceConfig] = Field(default_factory=list)
    unseen_site: str | None = "hospital_d"
    test_fraction: float = Field(0.25, gt=0, lt=1)
    augment: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.sites and self.synthetic is not None:
            raise ValueError("give either 'synthetic' or 'sites', not both (set synthetic: null)")
        if not self.sites and self.synthetic is None:
            raise ValueError("no data: give 'synthetic' settings or a list of 'sites'")
        names = [site.name for site in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique, got {names}")
        if self.sites and self.unseen_site is not None and self.unseen_site not in names:
            raise ValueError(f"unseen_site '{self.unseen_site}' is not one of the sites {names}")
        return self


class ModelConfig(_Strict):
    """A network from the model registry and its constructor arguments."""

    name: str = "unet"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(_Strict):
    """Local training at each site."""

    local_epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(3e-3, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"


class FederationConfig(_Strict):
    """Rounds and participation."""

    rounds: int = Field(12, ge=1)
    fraction: float = Field(1.0, gt=0, le=1)
    min_sites: int = Field(1, ge=1)


class StrategyConfig(BaseModel):
    """A strategy by registry name; every other key is a constructor argument."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    label: str | None = Field(None, description="Name shown in results; defaults to 'name'.")

    @property
    def params(self) -> dict[str, Any]:
        """The constructor arguments."""
        return dict(self.model_extra or {})

    @property
    def display_name(self) -> str:
        """The experiment's name in the run directory and the report."""
        return self.label or self.name


class BaselinesConfig(_Strict):
    """Comparisons that only a simulation can make."""

    centralized: bool = True
    local: bool = True


class SimulationConfig(_Strict):
    """Everything ``medfed simulate`` needs; all defaults together are the built-in demo."""

    seed: int = 0
    task: Literal["segmentation", "classification"] = "segmentation"
    output_dir: Path = Path("runs/demo")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    federation: FederationConfig = FederationConfig()
    strategies: list[StrategyConfig] = Field(
        default_factory=lambda: [StrategyConfig(name="fedavg"), StrategyConfig(name="fedprox", mu=0.01)]
    )
    baselines: BaselinesConfig = BaselinesConfig()

    @model_validator(mode="after")
    def _unique_experiments(self) -> SimulationConfig:
        labels = [strategy.display_name for strategy in self.strategies]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        if duplicated:
            raise ValueError(f"strategies {duplicated} appear twice: give each a distinct 'label'")
        return self
