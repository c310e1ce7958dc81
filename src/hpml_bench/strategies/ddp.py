"""`ddp`: DistributedDataParallel, one process per device.

Started by torchrun or srun (one process per device), by `strategy.nproc_per_node=N`
(hpml launches the workers), or alone as world size 1 (an in-memory store, no ports).
"""
from __future__ import annotations

import gc
import inspect
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
from torch.nn.parallel import DistributedDataParallel

from hpml_bench.errors import HpmlError
from hpml_bench.strategies.base import STRATEGIES
from hpml_bench.strategies.distributed import DistributedConfig, DistributedStrategy
from hpml_bench.strategies.split import comm_delay_s

# DDP's keyword for syncing buffers before each forward (newer torch renamed broadcast_buffers).
_BUFFER_SYNC = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                else "broadcast_buffers")


def _powersgd(cfg) -> tuple:
    state = powerSGD_hook.PowerSGDState(process_group=None, matrix_approximation_rank=cfg.powersgd_rank,
                                        start_powerSGD_iter=cfg.powersgd_start_iter)
    return state, powerSGD_hook.powerSGD_hook


def _ordered_allreduce(state, bucket):
    """The mean of every rank's bucket summed in rank order, the same for every element.

    A ring all-reduce adds an element's values in an order set by where the element lies in
    its bucket; over 3+ ranks float addition is not associative, so a different bucket layout
    gives different last bits. DDP lays its buckets out anew after the first step of every
    process, so a run resumed mid-epoch (whose first step uses the initial layout) drifts from
    the uninterrupted one by rounding. All-gather + a sum in rank order is bitwise the same
    whatever the layout, for world size x the bytes of a ring all-reduce.
    """
    grads = bucket.buffer()
    parts = [torch.empty_like(grads) for _ in range(dist.get_world_size())]

    def mean(fut):
        gathered = fut.value()
        total = gathered[0].clone()
        for part in gathered[1:]:
            total += part
        return total.div_(len(gathered))

    return dist.all_gather(parts, grads, async_op=True).get_future().then(mean)


# comm_hook name -> (hook state, hook) for DistributedDataParallel.register_comm_hook
_HOOKS = {
    "none": lambda cfg: None,  # DDP's built-in all-reduce (the Python one below when timed)
    "fp16": lambda cfg: (None, default_hooks.fp16_compress_hook),
    "bf16": lambda cfg: (None, default_hooks.bf16_compress_hook),
    "powersgd": _powersgd,
    "ordered": lambda cfg: (None, _ordered_allreduce),
}
# comm_hook -> (bytes sent per gradient byte, the collective's bus factor in world size n: the
# bytes each rank's link carries per byte sent); None: not known (PowerSGD's low-rank factors)
_WIRE = {
    "none": (1.0, lambda n: 2 * (n - 1) / n),  # ring all-reduce
    "fp16": (0.5, lambda n: 2 * (n - 1) / n),
    "bf16": (0.5, lambda n: 2 * (n - 1) / n),
    "powersgd": None,
    "ordered": (1.0, lambda n: n - 1),  # all-gather: every other rank's bucket arrives
}


@dataclass
class DDPConfig(DistributedConfig):
    name: str = "ddp"
    bucket_cap_mb: float = 25.0  # gradient bucket size of DDP's all-reduce
    gradient_as_bucket_view: bool = True  # gradients alias the buckets (saves a copy and memory)
    static_graph: bool = False  # the graph is the same every step (lets DDP skip per-step checks)
    find_unused_parameters: bool = False  # allow parameters that get no gradient in a step (slower)
    # Gradient compression on the all-reduce: fp16/bf16 halve the bytes sent (Horovod's
    # fp16 compression in the seeds); powersgd sends a low-rank approximation.
    comm_hook: str = "none"
    powersgd_rank: int = 1  # rank of PowerSGD's low-rank approximation
    powersgd_start_iter: int = 10  # plain all-reduce for the first steps, as PowerSGD advises
    # BatchNorm statistics over the global batch (SyncBatchNorm) instead of each rank's part:
    # for small per-GPU batches (segmentation). CUDA only (torch's SyncBatchNorm has no CPU kernels).
    sync_bn: bool = False

    def __post_init__(self):
        if self.comm_hook not in _HOOKS:
            raise HpmlError(f"strategy.comm_hook={self.comm_hook}: use one of {', '.join(_HOOKS)}")


@STRATEGIES.register("ddp", config=DDPConfig)
class DDPStrategy(DistributedStrategy):
    @classmethod
    def preflight(cls, cfg, world_size: int) -> None:
        super().preflight(cfg, world_size)
        cuda = torch.cuda.is_available() and cfg.device != "cpu"
        gloo = cfg.strategy.backend == "gloo" or (cfg.strategy.backend == "auto" and not cuda)
        if cfg.strategy.comm_hook == "powersgd" and gloo:
            # The hook chains further all-reduces (Ps, then Qs) from the futures of earlier
            # ones; gloo completes those futures on its own worker threads, so with several
            # buckets in flight the ranks issue the collectives in different orders and gloo
            # aborts the process ("op.preamble.length <= op.nbytes", SIGABRT). NCCL only.
            raise HpmlError("strategy.comm_hook=powersgd needs the nccl backend (CUDA GPUs): over gloo its "
                            "chained asynchronous all-reduces go out of order and abort; use comm_hook=fp16 "
                            "or bf16 on CPU")
        if cfg.strategy.sync_bn and not cuda:
            raise HpmlError("strategy.sync_bn=true needs CUDA GPUs: torch's SyncBatchNorm has no CPU kernels; "
                            "drop it on CPU (each rank then normalises with its own batch's statistics)")

    def wrap(self, model: nn.Module) -> nn.Module:
        cfg: DDPConfig = self.cfg
        if cfg.sync_bn:  # same parameter and buffer names: checkpoints load into plain BatchNorm
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            bucket_cap_mb=cfg.bucket_cap_mb,
            gradient_as_bucket_view=cfg.gradient_as_bucket_view,
            static_graph=cfg.static_graph,
            find_unused_parameters=cfg.find_unused_parameters,
            # Alone, there is no other rank to copy BatchNorm's buffers from: DDP would still
            # coalesce and broadcast them before every forward (a few small kernels a step).
            **{_BUFFER_SYNC: self.world_size > 1},
        )
        hook = _HOOKS[cfg.comm_hook](cfg)
        if hook is None and self.split.enabled:  # timing needs a Python hook: the same all-reduce
            hook = (None, default_hooks.allreduce_hook)
        if hook is not None:
            state, fn = hook
            ranged = self._ranged_hook(fn, f"allreduce_{cfg.comm_hook}")
            ddp.register_comm_hook(state, self._timed_hook(ranged) if self.split.enabled else ranged)
        return ddp

    def _ranged_hook(self, hook, name: str):
        """The comm hook inside a named range (the trace shows each bucket's compression +
        all-reduce launch); without a hook c10d names its own `gloo:all_reduce` / `nccl:all_reduce`."""
        def ranged(state, bucket):
            with self.range(name):
                return hook(state, bucket)
        return ranged

    def _timed_hook(self, hook):
        """Each bucket's collective timed from the hook's call (its gradients are ready) to the
        completion of its future, plus its bytes. The last bucket's call marks the end of the
        backward's compute; backward_done() counts the wait after it as exposed."""
        wire = _WIRE[self.cfg.comm_hook]
        delay = comm_delay_s()

        def timed(state, bucket):
            clock = self.split
            start = self._last_ready = clock.mark()
            if wire is not None:
                payload = bucket.buffer().numel() * bucket.buffer().element_size() * wire[0]
                clock.add_bytes(payload, payload * wire[1](self.world_size))

            def done(fut):
                if delay:  # HPML_SIMULATE_COMM_DELAY_S: a slower link (tests)
                    time.sleep(delay)
                clock.add("comm", start, clock.mark())
                return fut.value()
            return hook(state, bucket).then(done)
        return timed

    def split_expectation(self) -> dict[str, Any]:
        wire = _WIRE[self.cfg.comm_hook]
        if wire is None:
            return {}
        grads = sum(p.numel() * p.element_size() for p in self.unwrapped().parameters() if p.requires_grad)
        return {"comm_bytes_expected": grads * wire[0]}

    backward_range = "backward+allreduce"

    def compile_model(self, mode: str) -> None:
        # Dynamo's DDPOptimizer splits the compiled graph at every gradient bucket so that the
        # all-reduces overlap the backward; alone there is nothing to overlap, and the splits
        # only cost fusion and graph launches. Read when the graph is traced (the first step).
        self._optimize_ddp = torch._dynamo.config.optimize_ddp
        torch._dynamo.config.optimize_ddp = self._optimize_ddp if self.world_size > 1 else False
        super().compile_model(mode)

    def teardown(self) -> None:
        # Drop the DDP wrapper (its reducer holds the Python comm hook) while the process group
        # is alive: left to interpreter shutdown, a gloo run with the fp16/bf16 hook aborted in
        # ~1 of 3 runs after finishing ("terminate called without an active exception").
        self.model = None
        gc.collect()
        if hasattr(self, "_optimize_ddp"):
            torch._dynamo.config.optimize_ddp = self._optimize_ddp
        super().teardown()

    def grad_sync(self, sync: bool):
        return super().grad_sync(sync) if sync else getattr(self.model, "_orig_mod", self.model).no_sync()

    defers_sync = True

    def sync_gradients(self) -> None:
        """After an agreement window's step (strategies/agreement.py): the mean of every rank's
        gradients in one all-reduce, as DDP's own (without a comm_hook's compression)."""
        params = [p for p in self.unwrapped().parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:  # no gradient here this step (frozen part): zeros, as DDP sends
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in params]
        with self.range("allreduce_deferred"):
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat.div_(self.world_size)
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))
