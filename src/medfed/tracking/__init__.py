"""Experiment trackers (TensorBoard, MLflow) fed by a simulation's recorded rounds; each is an
optional dependency, imported only when the configuration turns it on."""

from medfed.tracking.trackers import Tracker, metric_key, open_trackers

__all__ = ["Tracker", "metric_key", "open_trackers"]
