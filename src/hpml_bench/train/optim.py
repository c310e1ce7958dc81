"""Optimizers and learning-rate schedules, chosen by name."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry
from hpml_bench.train.finetune import param_groups

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULERS: Registry = Registry("scheduler")


@dataclass
class OptimizerConfig:
    name: str = "adamw"  # adamw | adam | sgd (set by the optimizer=<choice> file)
    lr: float = 1e-3  # learning rate (peak, after warm-up)
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw
    eps: float = 1e-8  # Adam's denominator term
    # Linear scaling rule (lr x world size), as the seeds' DDP runs did.
    scale_lr_with_world_size: bool = False
    # Fine-tuning: the pretrained backbone learns at lr x this, the head at lr.
    backbone_lr_scale: float = 1.0
    # No weight decay on normalisation weights and biases (every parameter of one dimension,
    # as timm's param_groups_weight_decay): decay then only shrinks conv and linear weights.
    no_decay_norm_bias: bool = False

    def __post_init__(self):
        if self.lr <= 0:
            raise HpmlError(f"optimizer.lr={self.lr} must be positive")


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # cosine | constant | onecycle | step (set by the scheduler=<choice> file)
    # Linear warm-up from ~0 to lr, then the schedule; onecycle: its rising phase (from lr / div_factor).
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0  # cosine ends at lr x min_lr_ratio
    # step: the epochs at which the learning rate is multiplied by gamma (MultiStepLR's milestones).
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1  # step: the factor at each milestone
    div_factor: float = 25.0  # onecycle: starts at lr / div_factor (OneCycleLR's div_factor)
    final_div_factor: float = 1e4  # onecycle: ends at lr / (div_factor x final_div_factor)

    def __post_init__(self):
        if self.name == "onecycle" and self.warmup_epochs <= 0:
            raise HpmlError("scheduler=onecycle needs scheduler.warmup_epochs > 0 (its rising phase), e.g. 1")
        if self.div_factor <= 0 or self.final_div_factor <= 0 or self.gamma <= 0:
            raise HpmlError("scheduler.div_factor, scheduler.final_div_factor and scheduler.gamma must be positive")


@OPTIMIZERS.register("sgd")
def _sgd(params, cfg: OptimizerConfig, lr: float):
    return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, cfg: OptimizerConfig, lr: float):
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params, cfg: OptimizerConfig, lr: float):
    return torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


def build_optimizer(cfg: OptimizerConfig, model: nn.Module, world_size: int = 1,
                    include_frozen: bool = False) -> torch.optim.Optimizer:
    """The optimizer over the model's trainable parameters (all of them with include_frozen,
    for a backbone unfrozen later: frozen ones get no gradient, so no step, until then)."""

    params = [p for p in model.parameters() if p.requires_grad or include_frozen]
    if not any(p.requires_grad for p in params):
        raise HpmlError("the model has no trainable parameters; set model.freeze_backbone=false")
    lr = cfg.lr * world_size if cfg.scale_lr_with_world_size else cfg.lr
    groups = param_groups(model, params, lr, cfg.backbone_lr_scale)
    if cfg.no_decay_norm_bias:
        groups = without_norm_bias_decay(groups)
    return OPTIMIZERS.get(cfg.name)(groups, cfg, lr)


def without_norm_bias_decay(groups: list[dict]) -> list[dict]:
    """Each group split in two: its parameters of one dimension (biases, BatchNorm / LayerNorm
    / GroupNorm weights) with weight_decay 0, the others as they were (timm's rule)."""
    split = []
    for group in groups:
        flat = [p for p in group["params"] if p.ndim <= 1]
        rest = [p for p in group["params"] if p.ndim > 1]
        split += [g for g in ({**group, "params": rest}, {**group, "params": flat, "weight_decay": 0.0}) if g["params"]]
    return split


@SCHEDULERS.register("constant")
def _constant(step: int, total: int, warmup: int, cfg: SchedulerConfig, per_epoch: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


@SCHEDULERS.register("cosine")
def _cosine(step: int, total: int, warmup: int, cfg: SchedulerConfig, per_epoch: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULERS.register("onecycle")
def _onecycle(step: int, total: int, warmup: int, cfg: SchedulerConfig, per_epoch: int) -> float:
    """OneCycleLR's learning rate (cos annealing, two phases) as a factor of lr: up from
    1/div_factor over the warm-up, then down to 1/(div_factor x final_div_factor) at the end."""
    start, end = 1 / cfg.div_factor, 1 / (cfg.div_factor * cfg.final_div_factor)
    if step < warmup:
        return _cos_between(start, 1.0, step / max(1, warmup - 1))
    return _cos_between(1.0, end, min(1.0, (step - warmup + 1) / max(1, total - warmup)))


def _cos_between(start: float, end: float, progress: float) -> float:
    return end + (start - end) / 2 * (1 + math.cos(math.pi * progress))


@SCHEDULERS.register("step")
def _step(step: int, total: int, warmup: int, cfg: SchedulerConfig, per_epoch: int) -> float:
    """MultiStepLR: lr x gamma^(milestones passed), milestones in epochs; after the warm-up."""
    milestones = [round(m * per_epoch) for m in sorted(cfg.milestones)]
    return (min(1.0, (step + 1) / warmup) if warmup else 1.0) * cfg.gamma ** bisect.bisect_right(milestones, step)


def build_scheduler(cfg: SchedulerConfig, optimizer, steps_per_epoch: int, epochs: int):
    """A per-optimizer-step LambdaLR: linear warm-up, then the named schedule. Every schedule
    is a factor of lr (computed from the step, the run's length and the config), so a run
    resumed with more epochs stretches the schedule instead of running past its end."""
    factor = SCHEDULERS.get(cfg.name)
    total = steps_per_epoch * epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, total, warmup, cfg, steps_per_epoch))
