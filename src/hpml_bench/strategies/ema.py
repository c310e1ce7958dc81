"""Weight EMA (`trainer.ema_decay`): an exponential moving average of the weights, updated after
every optimizer step, validated beside the raw weights (val_ema_<metric>) and saved as
checkpoints/ema.pt.

torch's `AveragedModel` keeps the copy and applies the update (BatchNorm's buffers averaged too,
`use_buffers=True`); the decay warms up as timm's ModelEmaV3 does (`1 - (1 + t)^-3/4`, capped
at ema_decay), so that the first steps' random weights do not linger in the average of a short
run. The strategy owns it, as it owns the optimizer: it makes the copy before wrapping the model
and updates it after each optimizer step it takes.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

WARMUP_POWER = 0.75  # timm's advice for runs of up to ~100k steps (2/3 for a million or more)
_PREFIX = "module."  # AveragedModel's state_dict keys: module.<the model's key>, and n_averaged


class WeightEma:
    """The averaged copy of a model; `update(model)` after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        # n_averaged stays on the CPU (device=None): reading it costs no GPU synchronisation.
        self.averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=True)
        self.averaged.requires_grad_(False)
        self.averaged.eval()  # only ever evaluated: BatchNorm uses the averaged running statistics

    @property
    def module(self) -> nn.Module:
        """The averaged model, called like the raw one."""
        return self.averaged.module

    def decay_at(self, updates: int) -> float:
        """The decay of the update after `updates` earlier ones (the first update copies)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, 1 - (1 + updates) ** -WARMUP_POWER)

    @torch.no_grad()
    def _lerp(self, averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged) -> None:
        decay = self.decay_at(int(n_averaged))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - decay)
        else:  # integer buffers (BatchNorm's num_batches_tracked) follow the model, as in timm
            torch._foreach_copy_(averaged, current)

    def update(self, model: nn.Module) -> None:
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        """What last.pt keeps (the update count included, for the warm-up after a resume)."""
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)


def ema_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's state_dict inside a WeightEma state (what checkpoints/ema.pt holds)."""
    return {k[len(_PREFIX):]: v for k, v in state.items() if k.startswith(_PREFIX)}
