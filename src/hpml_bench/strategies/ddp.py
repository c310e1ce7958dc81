"""`ddp`: DistributedDataParallel, one process per device.

Started by torchrun (RANK/LOCAL_RANK/WORLD_SIZE in the environment) or on its own as a
single process (world size 1, an in-memory store: no ports, no launcher).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.base import STRATEGIES, StepSettings, Strategy, StrategyConfig


@dataclass
class DDPConfig(StrategyConfig):
    name: str = "ddp"
    bucket_cap_mb: float = 25.0
    gradient_as_bucket_view: bool = True
    static_graph: bool = False
    find_unused_parameters: bool = False
    timeout_s: float = 600.0


@STRATEGIES.register("ddp", config=DDPConfig)
class DDPStrategy(Strategy):
    def __init__(self, cfg: DDPConfig, step: StepSettings):
        super().__init__(cfg, step)
        env = os.environ
        self.rank = int(env.get("RANK", 0))
        self.local_rank = int(env.get("LOCAL_RANK", 0))
        self.world_size = int(env.get("WORLD_SIZE", 1))
        self._owns_group = False

    def setup(self) -> None:
        super().setup()
        backend = self._backend()
        if dist.is_initialized():
            return
        timeout = datetime.timedelta(seconds=self.cfg.timeout_s)
        if "MASTER_ADDR" in os.environ:  # torchrun or a launcher exported the rendezvous
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size, timeout=timeout,
                                    device_id=self.device if self.device.type == "cuda" else None)
        else:
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
        self._owns_group = True

    def _backend(self) -> str:
        backend = self.cfg.backend
        if backend == "auto":
            return "nccl" if self.device.type == "cuda" else "gloo"
        if backend == "nccl" and self.device.type != "cuda":
            raise HpmlError("strategy.backend=nccl needs CUDA GPUs; use strategy.backend=gloo (or auto) on CPU")
        if backend not in ("gloo", "nccl"):
            raise HpmlError(f"strategy.backend={backend}: use auto, gloo or nccl")
        return backend

    def teardown(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self._owns_group = False

    def wrap(self, model: nn.Module) -> nn.Module:
        cfg: DDPConfig = self.cfg
        return DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            bucket_cap_mb=cfg.bucket_cap_mb,
            gradient_as_bucket_view=cfg.gradient_as_bucket_view,
            static_graph=cfg.static_graph,
            find_unused_parameters=cfg.find_unused_parameters,
        )

    def grad_sync(self, sync: bool):
        return super().grad_sync(sync) if sync else self.unwrapped_ddp().no_sync()

    def unwrapped_ddp(self) -> DistributedDataParallel:
        return getattr(self.model, "_orig_mod", self.model)

    def reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
        out = tensor.detach().clone().to(self.device if self._backend() == "nccl" else "cpu")
        dist.all_reduce(out, op=ops[op])
        return out.to(tensor.device)

    def barrier(self) -> None:
        dist.barrier()
