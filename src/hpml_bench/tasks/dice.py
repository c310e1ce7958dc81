"""Foreground Dice for the segmentation task; its own module because subclassing torchmetrics'
DiceScore imports torchmetrics, which only Segmentation.metrics() should do (start-up time)."""
from __future__ import annotations

import warnings

import torch

from hpml_bench.tasks.light_torchmetrics import import_torchmetrics

import_torchmetrics()  # first, so that this import does not pull scipy and matplotlib
from torchmetrics.segmentation import DiceScore  # noqa: E402


class ForegroundDice(DiceScore):
    """Dice over the non-background classes, fed with logits."""

    def __init__(self, num_classes: int):
        with warnings.catch_warnings():  # the default-average notice; average is set explicitly
            warnings.simplefilter("ignore")
            super().__init__(num_classes=num_classes, include_background=False, average="micro",
                             aggregation_level="global", input_format="index")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.argmax(1), target)
