"""medfed: federated learning on multi-institutional medical imaging.

The Python API (``simulate``, its results and hook types) is imported on first use, so that
``import medfed`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "simulate": "medfed.api",
    "SimulationResults": "medfed.api",
    "SimulationConfig": "medfed.config.schema",
    "ModelContext": "medfed.orchestration.hooks",
    "Callbacks": "medfed.orchestration.simulation",
}

__all__ = ["Callbacks", "ModelContext", "SimulationConfig", "SimulationResults", "__version__", "simulate"]

if TYPE_CHECKING:
    from medfed.api import SimulationResults, simulate
    from medfed.config.schema import SimulationConfig
    from medfed.orchestration.hooks import ModelContext
    from medfed.orchestration.simulation import Callbacks


def __getattr__(name: str) -> Any:
    """The public name ``name``, imported from its module on first use."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'medfed' has no attribute {name!r}")
    value = getattr(import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
