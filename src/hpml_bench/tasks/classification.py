"""Classification: cross-entropy on logits [B, C]; accuracy."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hpml_bench.tasks.base import TASKS, Task

if TYPE_CHECKING:
    from torchmetrics import MetricCollection


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    monitor = "val_acc"
    monitor_higher_is_better = True

    def metrics(self) -> MetricCollection:
        # Imported here, not at the top: `import hpml_bench.run` stays free of torchmetrics'
        # scipy and matplotlib until a trainer is built (tests/test_startup.py).
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy

        return MetricCollection({"acc": MulticlassAccuracy(self.num_classes, average="micro", validate_args=False)})
