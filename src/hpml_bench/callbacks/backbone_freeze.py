"""Fine-tuning's callback: while the backbone is frozen its BatchNorm layers stay in eval mode
(their running statistics stay the pretrained ones); from `trainer.unfreeze_at_epoch` on,
everything trains."""
from __future__ import annotations

from torch import nn

from hpml_bench.callbacks.base import Callback
from hpml_bench.models.base import count_parameters


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
