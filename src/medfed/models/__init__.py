"""MONAI networks created by name through ``MODELS``."""

from medfed.models.registry import MODELS, NetworkSpec, build_model, network_spec

__all__ = ["MODELS", "NetworkSpec", "build_model", "network_spec"]
