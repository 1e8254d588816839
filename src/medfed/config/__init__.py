"""The YAML configuration of a simulation: pydantic schema and loading."""

from medfed.config.loading import load_config
from medfed.config.schema import SimulationConfig

__all__ = ["SimulationConfig", "load_config"]
