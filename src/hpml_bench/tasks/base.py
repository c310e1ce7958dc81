"""The Task interface and its registry; the loss's config (label smoothing, class weights)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

if TYPE_CHECKING:  # torchmetrics is imported by metrics() only: its import pulls scipy and matplotlib (~1.5 s)
    from torchmetrics import MetricCollection

TASKS: Registry = Registry("task")
AUX_LOSS_WEIGHT = 0.4


@dataclass
class LossConfig:
    # Cross-entropy against (1 - x) x one-hot + x / classes (F.cross_entropy's label_smoothing); 0 = off.
    label_smoothing: float = 0.0
    # Per-class weights of the training loss: null = none; auto = n / (classes x count) from the
    # training labels (scikit-learn's "balanced"); or a list with one weight per class.
    class_weights: Any = None

    def __post_init__(self):
        if not 0 <= self.label_smoothing < 1:
            raise HpmlError(f"loss.label_smoothing={self.label_smoothing}: give a value in [0, 1), e.g. 0.1")
        weights = self.class_weights
        if weights is None or weights == "auto":
            return
        if isinstance(weights, str) or not all(isinstance(w, (int, float)) and w >= 0 for w in weights) \
                or not any(weights):
            raise HpmlError(f"loss.class_weights={weights}: use null, auto or a list of weights >= 0, one per class")
        self.class_weights = [float(w) for w in weights]


def check_loss(cfg: LossConfig, task: str, classes: int) -> None:
    """Refuse class weights that do not fit the model's classes, before anything runs."""
    weights = cfg.class_weights
    if weights == "auto" and task != "classification":
        raise HpmlError(f"loss.class_weights=auto counts image labels; for {task} give a list of "
                        f"{classes} weights (one per mask class)")
    if isinstance(weights, list) and len(weights) != classes:
        raise HpmlError(f"loss.class_weights has {len(weights)} weights but the model has {classes} classes; "
                        f"give one per class")


def balanced_weights(counts: torch.Tensor) -> torch.Tensor:
    """n / (classes x count) per class (scikit-learn's compute_class_weight("balanced")); a
    class the training split never shows gets weight 0 (nothing to weigh)."""
    counts = counts.double()
    weights = counts.sum() / (len(counts) * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights)).float()


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

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, class_weights: Optional[torch.Tensor] = None):
        self.num_classes = num_classes
        # Validation and `hpml eval` score plain cross-entropy, so that runs with and without
        # the training loss's levers (smoothing, class weights) report comparable losses.
        self.criterion = nn.CrossEntropyLoss()
        self.label_smoothing, self.class_weights = label_smoothing, class_weights

    def _train_criterion(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # .to: a no-op once to() placed the weights; FLOPs are counted on a meta-device copy
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=self.label_smoothing)

    def logits(self, outputs) -> torch.Tensor:
        return outputs[0] if isinstance(outputs, tuple) else outputs

    def loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        """The training loss (loss.label_smoothing, loss.class_weights)."""
        loss = self._train_criterion(self.logits(outputs).float(), targets)
        aux = outputs[1] if isinstance(outputs, tuple) and len(outputs) > 1 else None
        if aux is not None:  # InceptionV3's auxiliary classifier, weighted as in its paper
            loss = loss + AUX_LOSS_WEIGHT * self._train_criterion(aux.float(), targets)
        return loss

    def eval_loss(self, outputs, targets: torch.Tensor) -> torch.Tensor:
        """Plain cross-entropy of the scored logits (no smoothing, no class weights)."""
        return self.criterion(self.logits(outputs).float(), targets)

    def to(self, device: torch.device) -> "Task":
        """The class weights on the device the loss is computed on."""
        if self.class_weights is not None:
            self.class_weights = self.class_weights.to(device)
        return self

    def metrics(self) -> MetricCollection:
        raise NotImplementedError

    @classmethod
    def logged_metrics(cls, ema: bool = False) -> list[str]:
        """Every score a run logs per validation (val_*, and val_ema_* with trainer.ema_decay)
        and per epoch (train_*)."""
        splits = ("val", "train", *(("val_ema",) if ema else ()))
        return [f"{split}_{name}" for split in splits for name in ("loss", *cls.metric_names)]


def build_task(name: str, num_classes: int, loss: Optional[LossConfig] = None,
               class_weights: Optional[torch.Tensor] = None) -> Task:
    """The task; `loss` sets the training loss's smoothing, `class_weights` its weights."""
    smoothing = loss.label_smoothing if loss is not None else 0.0
    return TASKS.get(name)(num_classes, smoothing, class_weights)
