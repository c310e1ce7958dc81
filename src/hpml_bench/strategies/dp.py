"""`dp`: nn.DataParallel over the visible GPUs, in one process.

Kept as the seeds' baseline. It is slower than DDP (one Python thread drives every GPU,
the model is re-broadcast and outputs gathered on GPU 0 each step); prefer strategy=ddp.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.base import STRATEGIES, Strategy, StrategyConfig
from hpml_bench.strategies.split import SplitClock


@dataclass
class DPConfig(StrategyConfig):
    name: str = "dp"


class TimedPhases:
    """DataParallel's communication timed (a mixin before nn.DataParallel): scatter of the
    inputs, replicate (the parameters broadcast to every GPU) and gather of the outputs, and in
    backward the nodes they leave (the gradients reduced onto GPU 0, the output gradients
    scattered). One thread drives every GPU and waits for each, so all of it is exposed.
    Marks are taken on the output device's stream: events on two devices cannot be compared."""

    clock_of: Callable[[], SplitClock]  # the strategy's clock (set by DataParallelStrategy.wrap)

    def _mark(self):
        clock = self.clock_of()
        return clock.mark(torch.cuda.current_stream(self.output_device) if clock.cuda else None)

    def _timed(self, fn, *args):
        start = self._mark()
        out = fn(*args)
        self.clock_of().add("exposed", start, self._mark())
        return out

    def _time_backward(self, tensor) -> None:
        node = getattr(tensor, "grad_fn", None)
        if node is None:  # evaluation: no backward
            return
        box = []
        node.register_prehook(lambda grads: box.append(self._mark()))
        node.register_hook(lambda grads_in, grads_out: self.clock_of().add("exposed", box.pop(), self._mark()))

    def scatter(self, inputs, kwargs, device_ids):
        return self._timed(super().scatter, inputs, kwargs, device_ids)

    def replicate(self, module, device_ids):
        replicas = self._timed(super().replicate, module, device_ids)
        self._time_backward(next(replicas[0].parameters(), None))  # one Broadcast node holds every replica
        return replicas

    def gather(self, outputs, output_device):
        out = self._timed(super().gather, outputs, output_device)
        self._time_backward(out)
        return out


class TimedDataParallel(TimedPhases, nn.DataParallel):
    """nn.DataParallel with its communication timed (strategies/split.py)."""


@STRATEGIES.register("dp", config=DPConfig)
class DataParallelStrategy(Strategy):
    @classmethod
    def preflight(cls, cfg, world_size: int) -> None:
        super().preflight(cfg, world_size)
        gpus = torch.cuda.device_count()
        if gpus < 2:
            raise HpmlError(f"strategy=dp needs at least 2 CUDA GPUs, this machine has {gpus}; use strategy=single")
        if cfg.device == "cpu":
            raise HpmlError("strategy=dp runs on GPUs; drop device=cpu or use strategy=single")

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.split.enabled:
            return nn.DataParallel(model)
        wrapped = TimedDataParallel(model)
        wrapped.clock_of = lambda: self.split
        return wrapped

    @property
    def device_count(self) -> int:
        return max(len(getattr(self.model, "device_ids", None) or []), torch.cuda.device_count(), 1)

    @property
    def local_devices(self) -> list[torch.device]:
        """Every GPU DataParallel replicates the model on (this one process drives them all)."""
        ids = getattr(self.model, "device_ids", None) or range(torch.cuda.device_count())
        return [torch.device("cuda", i) for i in ids]
