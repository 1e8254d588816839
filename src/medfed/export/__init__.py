"""``medfed export``: a simulation's trained model, loadable without medfed.

``ExportFormat`` lives here, free of torch, for the command line; the writers are in
``medfed.export.model``.
"""

from enum import Enum


class ExportFormat(str, Enum):
    """What ``medfed export`` writes."""

    STATE_DICT = "state_dict"
    TORCHSCRIPT = "torchscript"
    MONAI_BUNDLE = "monai-bundle"


__all__ = ["ExportFormat"]
