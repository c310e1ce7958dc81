"""Classification: cross-entropy on logits [B, C]; accuracy."""
from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from hpml_bench.tasks.base import TASKS, Task


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    monitor = "val_acc"
    monitor_higher_is_better = True

    def metrics(self) -> MetricCollection:
        return MetricCollection({"acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)})
