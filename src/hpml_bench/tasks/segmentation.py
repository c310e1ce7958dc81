"""Segmentation: per-pixel cross-entropy on logits [B, C, H, W] against masks [B, H, W].

Metrics: mean IoU over the classes (the seed's MIoU, background included), foreground
Dice and pixel accuracy. Unlike the seed, which averaged per-batch values, all three are
computed over the whole epoch's pixels (torchmetrics accumulates the counts).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hpml_bench.tasks.base import TASKS, Task
from hpml_bench.tasks.light_torchmetrics import import_torchmetrics

if TYPE_CHECKING:
    from torchmetrics import MetricCollection


@TASKS.register("segmentation")
class Segmentation(Task):
    name = "segmentation"
    monitor = "val_miou"
    monitor_higher_is_better = True
    metric_names = ("miou", "dice", "pixel_acc")  # the keys of metrics()

    def metrics(self) -> MetricCollection:
        # Imported here: torchmetrics costs ~1.6 s of start-up (scipy, matplotlib), see classification.py.
        import_torchmetrics()
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

        from hpml_bench.tasks.dice import ForegroundDice  # a torchmetrics Metric: imported with it

        return MetricCollection({
            "miou": MulticlassJaccardIndex(self.num_classes, average="macro", validate_args=False),
            "dice": ForegroundDice(self.num_classes),
            "pixel_acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False),
        })
