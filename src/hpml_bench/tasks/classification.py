"""Classification: cross-entropy on logits [B, C] against labels [B] or, from MixUp/CutMix,
soft targets [B, C] (nn.CrossEntropyLoss takes class probabilities as they are); accuracy."""
from __future__ import annotations

from typing import TYPE_CHECKING

from hpml_bench.tasks.base import TASKS, Task
from hpml_bench.tasks.light_torchmetrics import import_torchmetrics

if TYPE_CHECKING:
    from torchmetrics import MetricCollection


@TASKS.register("classification")
class Classification(Task):
    name = "classification"
    monitor = "val_acc"
    monitor_higher_is_better = True
    metric_names = ("acc",)  # the keys of metrics()

    def metrics(self) -> MetricCollection:
        # Imported here, not at the top, and through light_torchmetrics (without its scipy and
        # matplotlib): ~1.5 s less start-up (tests/test_startup.py).
        import_torchmetrics()
        from torchmetrics import MetricCollection

        from hpml_bench.tasks.accuracy import Accuracy  # a torchmetrics Metric: imported with it

        # Soft targets (dataset.augment's mixup/cutmix) are scored against their argmax.
        return MetricCollection({"acc": Accuracy(self.num_classes)})
