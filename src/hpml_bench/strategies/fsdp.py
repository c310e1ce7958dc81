"""`fsdp`: FSDP2 (`fully_shard`): parameters, gradients and optimizer state sharded over
ranks; each block (the model's split points) is one all-gather unit."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.fsdp._fully_shard._fsdp_collectives import DefaultAllGather, DefaultReduceScatter

from hpml_bench.errors import HpmlError
from hpml_bench.models import split_points
from hpml_bench.strategies.base import STRATEGIES
from hpml_bench.strategies.distributed import DistributedConfig, DistributedStrategy
from hpml_bench.strategies.optim_state import is_by_name, numbered_state_refused

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class FSDPConfig(DistributedConfig):
    name: str = "fsdp"
    param_dtype: str = "fp32"  # the dtype blocks compute in (mixed-precision policy)
    reduce_dtype: str = "fp32"  # the dtype gradients are reduce-scattered in
    reshard_after_forward: bool = True  # free gathered parameters after forward (less memory)

    def __post_init__(self):
        for knob in ("param_dtype", "reduce_dtype"):
            if getattr(self, knob) not in _DTYPES:
                raise HpmlError(f"strategy.{knob}={getattr(self, knob)}: use one of {', '.join(_DTYPES)}")


class _TimedAllGather(DefaultAllGather):
    """FSDP2's own all-gather (set_custom_all_gather), timed: on CPU gloo blocks the host (all
    of it exposed); on a GPU it runs on FSDP's all-gather stream (the forward pre-hooks below
    measure how long compute waited for it)."""

    def __init__(self, strategy: "FSDPStrategy"):
        self.strategy = strategy

    def __call__(self, output_tensor, input_tensor, group, async_op: bool = False):
        clock = self.strategy.split
        start = clock.mark()
        work = super().__call__(output_tensor, input_tensor, group, async_op)
        shard = input_tensor.numel() * input_tensor.element_size()
        clock.add_bytes(shard, shard * (group.size() - 1))  # every other rank's shard arrives
        _finished(clock, start, work)
        return work


class _TimedReduceScatter(DefaultReduceScatter):
    """FSDP2's own reduce-scatter, timed; its call marks when the gradients it reduces were
    ready on the compute stream, so backward_done() counts the wait after the last one."""

    def __init__(self, strategy: "FSDPStrategy"):
        self.strategy = strategy

    def __call__(self, output_tensor, input_tensor, group, op, async_op: bool = False):
        strategy, clock = self.strategy, self.strategy.split
        compute = torch.cuda.default_stream(strategy.device) if clock.cuda else None
        strategy._last_ready = clock.mark(compute)
        start = clock.mark()
        work = super().__call__(output_tensor, input_tensor, group, op, async_op)
        size, n = input_tensor.numel() * input_tensor.element_size(), group.size()
        clock.add_bytes(size, size * (n - 1) / n)
        _finished(clock, start, work)
        return work


def _finished(clock, start, work) -> None:
    """The collective's interval: until its work's future completes (asynchronous), else until
    the call returned (CPU: the host waited, exposed; GPU: an event after it on its stream)."""
    if work is not None:
        work.get_future().then(lambda _: clock.add("comm", start, clock.mark()))
    else:
        clock.add("comm" if clock.cuda else "exposed", start, clock.mark())


@STRATEGIES.register("fsdp", config=FSDPConfig)
class FSDPStrategy(DistributedStrategy):
    _full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    # FSDP2 all-gathers parameters inside forward/backward and reduce-scatters gradients in backward.
    backward_range = "backward+reduce_scatter"
    supports_ema = False  # each rank holds shards of the parameters
    backward_collectives = True  # an out-of-memory there is not agreed on (strategies/agreement.py)

    @classmethod
    def preflight(cls, cfg, world_size: int) -> None:
        super().preflight(cfg, world_size)
        # fully_shard refuses non-contiguous parameters, and channels-last conv weights are
        # (torch 2.14: "FSDP does not support non-contiguous parameters yet").
        if cfg.trainer.channels_last:
            raise HpmlError("strategy=fsdp cannot shard channels-last weights (FSDP2 needs contiguous parameters); "
                            "drop trainer.channels_last or use strategy=ddp")

    def wrap(self, model: nn.Module) -> nn.Module:
        cfg: FSDPConfig = self.cfg
        policy = MixedPrecisionPolicy(param_dtype=_DTYPES[cfg.param_dtype], reduce_dtype=_DTYPES[cfg.reduce_dtype])
        try:
            blocks = split_points(model)
        except HpmlError:
            blocks = []  # no declared blocks: the whole model is one unit
        # Only blocks the model's forward really calls: a split point may be a Sequential made
        # up to group modules (ResNet's stem), whose own forward hooks would never run.
        real = {id(m) for m in model.modules()}
        units = [b for b in blocks if id(b) in real and any(p.requires_grad for p in b.parameters())]
        for block in units:
            fully_shard(block, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)
        fully_shard(model, mp_policy=policy, reshard_after_forward=cfg.reshard_after_forward)
        if self.split.enabled:
            self._time_collectives(model)
        # Registered after the split's hooks and prepended: the agreement runs before the unshard's clock starts.
        for unit in [model, *units]:  # first, before FSDP's own all-gather (strategies/agreement.py)
            unit.register_forward_pre_hook(self._agree, prepend=True)
        return model

    def _time_collectives(self, model: nn.Module) -> None:
        """Every FSDP unit's all-gather and reduce-scatter timed; each unit's forward pre-hook
        (FSDP's unshard: wait for the all-gather, copy out) bracketed as exposed communication."""
        for unit in [m for m in model.modules() if hasattr(m, "set_custom_all_gather")]:
            unit.set_custom_all_gather(_TimedAllGather(self))
            unit.set_custom_reduce_scatter(_TimedReduceScatter(self))
            unit.register_forward_pre_hook(self._wait_starts, prepend=True)  # before FSDP's own
            unit.register_forward_pre_hook(self._wait_ends)

    def _wait_starts(self, module, args) -> None:
        self._unshard_start = self.split.mark()

    def _wait_ends(self, module, args) -> None:
        self.split.add("exposed", self._unshard_start, self.split.mark())

    def _agree(self, module, args) -> None:
        self.agreement.point()  # nothing outside an agreement window

    def after_out_of_memory(self) -> None:
        """Free the parameters a step left unsharded when it stopped part-way."""
        for module in self.unwrapped().modules():
            if isinstance(module, FSDPModule):
                module.reshard()
        super().after_out_of_memory()

    def grad_sync(self, sync: bool):
        self.unwrapped().set_requires_gradient_sync(sync)
        return super().grad_sync(sync)

    # Checkpoints hold full (unsharded) tensors, so a single-device run can load them.
    def model_state(self) -> dict[str, torch.Tensor]:
        return get_model_state_dict(self.unwrapped(), options=self._full)

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        set_model_state_dict(self.unwrapped(), state, options=StateDictOptions(full_state_dict=True))

    def optimizer_state(self) -> dict[str, Any]:
        return get_optimizer_state_dict(self.unwrapped(), self.optimizer, options=self._full)

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        if not is_by_name(state):
            raise HpmlError(numbered_state_refused("fsdp"))
        set_optimizer_state_dict(self.unwrapped(), self.optimizer, state, options=StateDictOptions(full_state_dict=True))
