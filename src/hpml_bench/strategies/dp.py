"""`dp`: nn.DataParallel over the visible GPUs, in one process.

Kept as the seeds' baseline. It is slower than DDP (one Python thread drives every GPU,
the model is re-broadcast and outputs gathered on GPU 0 each step); prefer strategy=ddp.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.base import STRATEGIES, Strategy, StrategyConfig


@dataclass
class DPConfig(StrategyConfig):
    name: str = "dp"


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
        return nn.DataParallel(model)

    @property
    def device_count(self) -> int:
        return max(len(getattr(self.model, "device_ids", None) or []), torch.cuda.device_count(), 1)

    @property
    def local_devices(self) -> list[torch.device]:
        """Every GPU DataParallel replicates the model on (this one process drives them all)."""
        ids = getattr(self.model, "device_ids", None) or range(torch.cuda.device_count())
        return [torch.device("cuda", i) for i in ids]
