"""What `hpml eval` measures, per task (the SCORES registry, keyed like TASKS).

The headline numbers are the task's own validation metrics (tasks/), computed the same way
as training's validation, so `hpml eval split=val` repeats the run's val_* numbers; each
task adds per-class scores and a confusion matrix (torchmetrics).
"""
from __future__ import annotations

import warnings

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)
from torchmetrics.segmentation import DiceScore

from hpml_bench.registry import Registry

SCORES: Registry = Registry("eval task")


class Scores:
    """Per-class metrics fed with predicted class indices, and how they read per class."""

    unit = "samples"  # what the confusion matrix counts
    support = "support"  # the per-class key that counts them

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.per_class = MetricCollection(self.metrics(num_classes))
        self.confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)

    def metrics(self, n: int) -> dict:
        raise NotImplementedError

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        preds = logits.argmax(1)
        self.per_class.update(preds, targets)
        self.confusion.update(preds, targets)

    def compute(self, names: list[str]) -> tuple[dict, list[list[int]]]:
        """({class name: {metric: value, support: count}}, confusion counts [true][predicted])."""
        with warnings.catch_warnings():  # "no samples of class k": its score is 0, said by support 0
            warnings.simplefilter("ignore")
            values = {k: v.tolist() for k, v in self.per_class.compute().items()}
        confusion = self.confusion.compute().long()
        support = confusion.sum(1).tolist()
        per_class = {name: {**{k: float(v[i]) for k, v in values.items()}, self.support: int(support[i])}
                     for i, name in enumerate(names)}
        return per_class, confusion.tolist()


@SCORES.register("classification")
class ClassificationScores(Scores):
    def metrics(self, n: int) -> dict:
        return {"precision": MulticlassPrecision(n, average=None, validate_args=False),
                "recall": MulticlassRecall(n, average=None, validate_args=False),
                "f1": MulticlassF1Score(n, average=None, validate_args=False)}


@SCORES.register("segmentation")
class SegmentationScores(Scores):
    unit, support = "pixels", "pixels"

    def metrics(self, n: int) -> dict:
        with warnings.catch_warnings():  # DiceScore's notice about its default average; set explicitly here
            warnings.simplefilter("ignore")
            dice = DiceScore(n, include_background=True, average="none", input_format="index",
                             aggregation_level="global")  # over the split's pixels, like the task's Dice
        return {"iou": MulticlassJaccardIndex(n, average="none", validate_args=False), "dice": dice}
