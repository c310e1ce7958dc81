"""Classification accuracy that also scores training batches with soft targets (MixUp/CutMix):
against the class the mixed target weighs most (its argmax), as timm's train accuracy does.
Its own module, like dice.py: subclassing a torchmetrics metric imports torchmetrics, which only
Classification.metrics() should do (start-up time)."""
from __future__ import annotations

import torch

from hpml_bench.tasks.light_torchmetrics import import_torchmetrics

import_torchmetrics()  # first, so that this import does not pull scipy and matplotlib
from torchmetrics.classification import MulticlassAccuracy  # noqa: E402


class Accuracy(MulticlassAccuracy):
    """Micro-averaged accuracy of logits [B, C] against labels [B] or soft targets [B, C]."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes, average="micro", validate_args=False)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if target.is_floating_point() and target.dim() == preds.dim():  # mixed: [B, C] weights
            target = target.argmax(1)
        super().update(preds, target)
