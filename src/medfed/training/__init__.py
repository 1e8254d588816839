"""Local training at a site and evaluation with MONAI metrics."""

from medfed.training.adaptation import adapt_norm_statistics
from medfed.training.evaluation import evaluate_cases, predict
from medfed.training.trainer import FitReport, LocalTrainer, TrainSettings

__all__ = [
    "FitReport",
    "LocalTrainer",
    "TrainSettings",
    "adapt_norm_statistics",
    "evaluate_cases",
    "predict",
]
