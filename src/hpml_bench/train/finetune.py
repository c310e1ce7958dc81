"""Fine-tuning as the seeds did it: a frozen pretrained backbone with a new head, then
(optionally) everything from `trainer.unfreeze_at_epoch`, with a smaller learning rate for
the backbone (`optimizer.backbone_lr_scale`): the checks and the parameter groups. The
callback that keeps the frozen BatchNorms in eval mode and unfreezes is
callbacks/backbone_freeze.py."""
from __future__ import annotations

from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import head_of

# DDP registers gradient hooks (and FSDP / pipelines shard or place parameters) for the
# parameters trainable at the start, so unfreezing later would leave the new ones unsynced.
_UNFREEZE_STRATEGIES = ("single", "dp")


def check_transfer(cfg) -> None:
    """Refuse fine-tuning settings that cannot work, before anything runs (`cfg`: TrainConfig)."""
    at, epochs = cfg.trainer.unfreeze_at_epoch, cfg.trainer.epochs
    if cfg.optimizer.backbone_lr_scale <= 0:
        raise HpmlError(f"optimizer.backbone_lr_scale={cfg.optimizer.backbone_lr_scale} must be positive")
    if at is None:
        return
    if not cfg.model.freeze_backbone:
        raise HpmlError(f"trainer.unfreeze_at_epoch={at} needs model.freeze_backbone=true (nothing is frozen)")
    if not 2 <= at <= epochs:
        raise HpmlError(f"trainer.unfreeze_at_epoch={at}: give an epoch from 2 to trainer.epochs={epochs} "
                        f"(the backbone trains from that epoch on)")
    if cfg.strategy.name not in _UNFREEZE_STRATEGIES:
        raise HpmlError(f"trainer.unfreeze_at_epoch works with strategy={' or '.join(_UNFREEZE_STRATEGIES)}, not "
                        f"{cfg.strategy.name}; train the head in one run, then fine-tune with model.weights=<its checkpoint>")


def param_groups(model: nn.Module, params: list[nn.Parameter], lr: float, backbone_lr_scale: float) -> list[dict]:
    """[head group at lr, backbone group at lr x scale] (one group when the scale is 1)."""
    if backbone_lr_scale == 1:
        return [{"params": params, "lr": lr}]
    model = getattr(model, "module", model)  # DDP / DataParallel
    try:
        head = {id(p) for p in head_of(model).parameters()}
    except HpmlError:
        raise HpmlError(f"optimizer.backbone_lr_scale needs a model with a head/fc; {type(model).__name__} has none "
                        f"(set optimizer.backbone_lr_scale=1)") from None
    groups = [{"params": [p for p in params if id(p) in head], "lr": lr, "name": "head"},
              {"params": [p for p in params if id(p) not in head], "lr": lr * backbone_lr_scale, "name": "backbone"}]
    return [g for g in groups if g["params"]]
