"""What every tracker does, and opening the ones a configuration asks for."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from medfed.config.schema import TrackingConfig
from medfed.errors import ConfigError
from medfed.orchestration.metrics_log import MetricRow
from medfed.orchestration.simulation import Callbacks

EXTRAS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
"""The module each tracker needs, by ``tracking:`` key (also the name of medfed's extra)."""


class Tracker(Protocol):
    """Writes a simulation's recorded rounds somewhere a tracker's UI reads them."""

    def callbacks(self) -> Callbacks:
        """The hooks that write (an experiment starts, a round is recorded, it ends)."""
        ...

    def close(self) -> None:
        """Flushes and closes what is open; called once, after the last experiment."""
        ...


def metric_key(row: MetricRow) -> str:
    """A row's name in a tracker: ``split/metric/site`` (e.g. ``test/dice/hospital_a``)."""
    return f"{row.split}/{row.metric}/{row.site}"


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested settings as ``{"federation.rounds": "12", ...}`` (lists as their text)."""
    flat = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_settings(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def check_trackers(config: TrackingConfig) -> None:
    """Raises ``ConfigError`` when a tracker is on but its package is not installed."""
    for key, module in EXTRAS.items():
        if getattr(config, key) and importlib.util.find_spec(module) is None:
            raise ConfigError(f"tracking.{key} needs the '{module}' package: pip install 'medfed[{key}]'")


def open_trackers(config: TrackingConfig, run_dir: Path, settings: Mapping[str, str]) -> list[Tracker]:
    """The trackers ``config`` turns on, writing under ``run_dir`` (``tensorboard/``,
    ``mlflow/``); ``settings`` (the flattened configuration) are logged as MLflow parameters.

    Raises:
        ConfigError: A tracker's package is not installed.
    """
    check_trackers(config)
    trackers: list[Tracker] = []
    if config.tensorboard:
        from medfed.tracking.tensorboard import TensorBoardTracker

        trackers.append(TensorBoardTracker(run_dir / "tensorboard"))
    if config.mlflow:
        from medfed.tracking.mlflow import MlflowTracker

        trackers.append(MlflowTracker(run_dir / "mlflow", experiment=run_dir.name, params=settings))
    return trackers
