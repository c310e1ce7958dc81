"""The Task interface and its registry."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hpml_bench.registry import Registry

if TYPE_CHECKING:  # torchmetrics is imported by metrics() only: its import pulls scipy and matplotlib (~1.5 s)
    from torchmetrics import MetricCollection

TASKS: Registry = Registry("task")
AUX_LOSS_WEIGHT = 0.4


class Task:
    """Loss and metrics for one kind of prediction.

    `loss(outputs, targets)` takes the model's raw outputs (which may be a tuple, e.g.
    InceptionV3's aux logits in training); `logits(outputs)` picks what metrics score.
    """

    name = "?"
    # The metric that decides best.pt, and whether larger is better.
    monitor = "val_loss"
    monitor_higher_is_better = False
    # The keys of metrics(), known without building them (torchmetrics is slow to import): the
    # names a target, early stopping or trainer.monitor may name are checked against them.
    metric_names: tuple[str, ...] = ()

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.criterion = nn.CrossEntropyLoss()

    def logits(self, outputs) -> torch.Tensor:
        return outputs[0] if isinstance(outputs, tuple) else outputs

    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        loss = self.criterion(self.logits(outputs).float(), targets)
        aux = outputs[1] if isinstance(outputs, tuple) and len(outputs) > 1 else None
        if aux is not None:  # InceptionV3's auxiliary classifier, weighted as in its paper
            loss = loss + AUX_LOSS_WEIGHT * self.criterion(aux.float(), targets)
        return loss

    def metrics(self) -> MetricCollection:
        raise NotImplementedError

    @classmethod
    def logged_metrics(cls) -> list[str]:
        """Every score a run logs per validation (val_*) and per epoch (train_*)."""
        return [f"{split}_{name}" for split in ("val", "train") for name in ("loss", *cls.metric_names)]


def build_task(name: str, num_classes: int) -> Task:
    return TASKS.get(name)(num_classes)
