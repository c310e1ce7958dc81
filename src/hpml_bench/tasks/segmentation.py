"""Segmentation: per-pixel cross-entropy on logits [B, C, H, W] against masks [B, H, W].

Metrics: mean IoU over the classes (the seed's MIoU, background included), foreground
Dice and pixel accuracy. Unlike the seed, which averaged per-batch values, all three are
computed over the whole epoch's pixels (torchmetrics accumulates the counts).
"""
from __future__ import annotations

import warnings

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
from torchmetrics.segmentation import DiceScore

from hpml_bench.tasks.base import TASKS, Task


class ForegroundDice(DiceScore):
    """Dice over the non-background classes, fed with logits."""

    def __init__(self, num_classes: int):
        with warnings.catch_warnings():  # the default-average notice; average is set explicitly
            warnings.simplefilter("ignore")
            super().__init__(num_classes=num_classes, include_background=False, average="micro",
                             aggregation_level="global", input_format="index")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds.argmax(1), target)


@TASKS.register("segmentation")
class Segmentation(Task):
    name = "segmentation"
    monitor = "val_miou"
    monitor_higher_is_better = True

    def metrics(self) -> MetricCollection:
        return MetricCollection({
            "miou": MulticlassJaccardIndex(self.num_classes, average="macro", validate_args=False),
            "dice": ForegroundDice(self.num_classes),
            "pixel_acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False),
        })
