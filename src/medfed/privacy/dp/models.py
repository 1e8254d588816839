"""Making a network trainable with DP-SGD: layers that mix samples of a batch are replaced.

BatchNorm normalises each sample with statistics of the others, so per-sample gradients (and
their clipping) are undefined; Opacus's ``ModuleValidator.fix`` swaps it for GroupNorm.
"""

from __future__ import annotations

import logging

from opacus.validators import ModuleValidator
from torch import nn

from medfed.errors import ConfigError

logger = logging.getLogger(__name__)


def dp_incompatibilities(model: nn.Module) -> list[str]:
    """Why ``model`` cannot be trained with DP-SGD, one line per problem (empty when it can)."""
    return [str(error).split(".")[0] for error in ModuleValidator.validate(model, strict=False)]


def make_dp_compatible(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """``model`` made DP-compatible, and what was changed (``"path: BatchNorm2d -> GroupNorm"``).

    Returns ``model`` itself with no changes when it is compatible already; otherwise a fixed
    copy, and the changes are logged at WARNING level.

    Raises:
        ConfigError: A layer cannot be fixed automatically; the message lists the problems.
    """
    if not dp_incompatibilities(model):
        return model, []
    fixed = ModuleValidator.fix(model)
    remaining = dp_incompatibilities(fixed)
    if remaining:
        raise ConfigError(f"the model cannot be trained with DP-SGD: {'; '.join(remaining)}")
    before = dict(model.named_modules())
    changes = [
        f"{name}: {type(before[name]).__name__} -> {type(module).__name__}"
        for name, module in fixed.named_modules()
        if name in before and type(before[name]) is not type(module)
    ]
    logger.warning(
        "differential privacy: made the model DP-compatible by replacing %d layers (%s)",
        len(changes),
        ", ".join(changes),
    )
    return fixed, changes
