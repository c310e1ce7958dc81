"""Optimizers and learning-rate schedules, chosen by name."""
from __future__ import annotations

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

    def __post_init__(self):
        if self.lr <= 0:
            raise HpmlError(f"optimizer.lr={self.lr} must be positive")


@dataclass
class SchedulerConfig:
    name: str = "cosine"  # cosine | constant (set by the scheduler=<choice> file)
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to lr, then the schedule
    min_lr_ratio: float = 0.0  # cosine ends at lr x min_lr_ratio


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
    return OPTIMIZERS.get(cfg.name)(param_groups(model, params, lr, cfg.backbone_lr_scale), cfg, lr)


@SCHEDULERS.register("constant")
def _constant(step: int, total: int, warmup: int, cfg: SchedulerConfig) -> float:
    return min(1.0, (step + 1) / warmup) if warmup else 1.0


@SCHEDULERS.register("cosine")
def _cosine(step: int, total: int, warmup: int, cfg: SchedulerConfig) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(cfg: SchedulerConfig, optimizer, steps_per_epoch: int, epochs: int):
    """A per-optimizer-step LambdaLR: linear warm-up, then the named schedule."""
    factor = SCHEDULERS.get(cfg.name)
    total = steps_per_epoch * epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step, total, warmup, cfg))
