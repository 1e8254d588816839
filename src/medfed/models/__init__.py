"""MONAI networks created by name through ``MODELS``."""

from medfed.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
