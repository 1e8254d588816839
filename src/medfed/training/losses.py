"""Loss functions per task."""

from __future__ import annotations

from monai.losses import DiceCELoss
from torch import nn

from medfed.types import Task


def loss_for(task: Task) -> nn.Module:
    """Dice + cross-entropy for segmentation (logits BCHW[D], mask B1HW[D]); CE for classification."""
    if task == "segmentation":
        return DiceCELoss(to_onehot_y=True, softmax=True)
    return nn.CrossEntropyLoss()
