"""Fine-tuning as the seeds did it: a frozen pretrained backbone with a new head, then
(optionally) everything from `trainer.unfreeze_at_epoch`, with a smaller learning rate for
the backbone (`optimizer.backbone_lr_scale`). While frozen, the backbone's BatchNorm layers
stay in eval mode, so their running statistics stay the pretrained ones too."""
from __future__ import annotations

from torch import nn

from hpml_bench.callbacks.base import Callback
from hpml_bench.errors import HpmlError
from hpml_bench.models.base import count_parameters, head_of

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


def frozen_batchnorms(model: nn.Module) -> list[nn.Module]:
    """BatchNorm layers none of whose parameters train."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not any(p.requires_grad for p in m.parameters())]


class BackboneFreeze(Callback):
    """Keeps the frozen backbone's BatchNorm in eval mode and unfreezes it at `unfreeze_at`
    (1-based epoch; None = never). Idempotent per epoch, so a resumed run lands right too."""

    def __init__(self, unfreeze_at: int | None, announce: bool):
        self.unfreeze_at, self.announce = unfreeze_at, announce

    def on_fit_start(self, trainer) -> None:
        model = trainer.strategy.unwrapped()
        if self.announce:
            total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
            until = f"until epoch {self.unfreeze_at}" if self.unfreeze_at else "for the whole run"
            print(f"parameters: {trainable:,} trainable, {total - trainable:,} frozen (backbone frozen {until})")

    def on_train_epoch_start(self, trainer) -> None:
        model = trainer.strategy.unwrapped()
        if self.unfreeze_at is not None and trainer.epoch + 1 >= self.unfreeze_at:
            if not all(p.requires_grad for p in model.parameters()):
                model.requires_grad_(True)
                if self.announce:
                    print(f"epoch {trainer.epoch + 1}: backbone unfrozen, {count_parameters(model):,} parameters train")
            return
        for bn in frozen_batchnorms(model):
            bn.eval()
