"""`pipe`: pipeline parallelism with torch.distributed.pipelining.

The model is cut at its declared split points into one stage per rank (or several with
the interleaved schedule); each batch is split into micro-batches that flow through the
stages on a GPipe, 1F1B or interleaved-1F1B schedule. The last stage computes the loss and
the outputs; the other ranks report zero samples, so the summed epoch record is complete.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Optional

import torch
from torch import nn
from torch.distributed.pipelining import (
    PipelineStage,
    Schedule1F1B,
    ScheduleGPipe,
    ScheduleInterleaved1F1B,
)

from hpml_bench.errors import HpmlError
from hpml_bench.faults.oom import next_micro_batch
from hpml_bench.models import build_for_shapes, split_points
from hpml_bench.strategies.base import STRATEGIES
from hpml_bench.strategies.distributed import DistributedConfig, DistributedStrategy
from hpml_bench.strategies.optim_state import by_name, is_by_name, load_by_name, merged, numbered_state_refused
from hpml_bench.strategies.split import pipeline_bubble_fraction
from hpml_bench.strategies.step import StepOutput

_SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B, "interleaved_1f1b": ScheduleInterleaved1F1B}


@dataclass
class PipeConfig(DistributedConfig):
    name: str = "pipe"
    schedule: str = "gpipe"  # gpipe | 1f1b | interleaved_1f1b
    n_microbatches: int = 4  # micro-batches each batch is split into (must divide it)
    stages_per_rank: int = 1  # >1 with interleaved_1f1b
    # Indices of split points after which to cut (len = stages - 1); null = balance parameters.
    split_after: Optional[list[int]] = None

    def __post_init__(self):
        if self.schedule not in _SCHEDULES:
            raise HpmlError(f"strategy.schedule={self.schedule}: use one of {', '.join(_SCHEDULES)}")
        if self.n_microbatches <= 0 or self.stages_per_rank <= 0:
            raise HpmlError("strategy.n_microbatches and strategy.stages_per_rank must be positive")
        if self.stages_per_rank > 1 and self.schedule != "interleaved_1f1b":
            raise HpmlError("strategy.stages_per_rank>1 needs strategy.schedule=interleaved_1f1b")


def balanced_cuts(sizes: list[int], n_stages: int) -> list[int]:
    """Indices after which to cut `sizes` into n_stages contiguous, non-empty groups of
    roughly equal total size."""
    total, cuts = sum(sizes), []
    running = list(accumulate(sizes))
    for k in range(1, n_stages):
        target = total * k / n_stages
        lowest = cuts[-1] + 1 if cuts else 0
        highest = len(sizes) - 1 - (n_stages - k)
        best = min(range(lowest, highest + 1), key=lambda i: abs(running[i] - target))
        cuts.append(best)
    return cuts


class _Contiguous(nn.Module):
    """Ends each stage: send/recv need contiguous tensors, and a block may end in a permute
    (iFormer's stages hand on channels-last views)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()


class _TimedStage(PipelineStage):
    """A stage whose schedule's steps are timed (strategy.timed_compute): compute is a chunk's
    forward or backward (and the loss); the gap before a chunk is bubble when the stage had
    posted a receive (idle for its neighbour's activation or gradient, its transfer included),
    else communication (posting sends, waiting for them)."""

    def __init__(self, *args, strategy: "PipeStrategy", **kwargs):
        super().__init__(*args, **kwargs)
        self.strategy = strategy

    def get_fwd_recv_ops(self, fwd_chunk_id: int):
        return self.strategy.posted(super().get_fwd_recv_ops(fwd_chunk_id), receive=True)

    def get_bwd_recv_ops(self, bwd_chunk_id: int):
        return self.strategy.posted(super().get_bwd_recv_ops(bwd_chunk_id), receive=True)

    def get_fwd_send_ops(self, fwd_chunk_id: int):
        return self.strategy.posted(super().get_fwd_send_ops(fwd_chunk_id), receive=False)

    def get_bwd_send_ops(self, bwd_chunk_id: int):
        return self.strategy.posted(super().get_bwd_send_ops(bwd_chunk_id), receive=False)

    def forward_one_chunk(self, *args, **kwargs):
        return self.strategy.timed_compute(super().forward_one_chunk, *args, **kwargs)

    def backward_one_chunk(self, *args, **kwargs):
        return self.strategy.timed_compute(super().backward_one_chunk, *args, **kwargs)


@STRATEGIES.register("pipe", config=PipeConfig)
class PipeStrategy(DistributedStrategy):
    needs_full_batches = True
    supports_ema = False  # each rank holds only its stages

    @property
    def data_parallel(self) -> tuple[int, int]:
        return 1, 0  # every rank iterates the same batches; stage 0 reads inputs, the last targets

    @classmethod
    def preflight(cls, cfg, world_size: int) -> None:
        super().preflight(cfg, world_size)
        if cfg.trainer.precision == "fp16":
            raise HpmlError("strategy=pipe does not support trainer.precision=fp16 (GradScaler); use bf16")
        if cfg.trainer.auto_microbatch:
            raise HpmlError("strategy=pipe splits each batch into strategy.n_microbatches itself: drop "
                            "trainer.auto_microbatch and raise strategy.n_microbatches to use less memory")
        if cfg.trainer.grad_accum_steps != 1:
            raise HpmlError("strategy=pipe accumulates over micro-batches: set trainer.grad_accum_steps=1 "
                            "and raise strategy.n_microbatches instead")
        if cfg.dataset.batch_size % cfg.strategy.n_microbatches:
            raise HpmlError(f"dataset.batch_size={cfg.dataset.batch_size} does not split into strategy.n_microbatches="
                            f"{cfg.strategy.n_microbatches}; pick a batch size divisible by it")

        blocks = split_points(build_for_shapes(cfg.model))  # the model's shape only, to count its split points
        stages = world_size * cfg.strategy.stages_per_rank
        if len(blocks) < stages:
            raise HpmlError(f"strategy=pipe needs {stages} stages ({world_size} processes x "
                            f"{cfg.strategy.stages_per_rank}) but model {cfg.model.name} has {len(blocks)} split points; "
                            f"use fewer processes")

    @property
    def n_stages(self) -> int:
        return self.world_size * self.cfg.stages_per_rank

    def wrap(self, model: nn.Module) -> nn.Module:
        blocks = split_points(model)
        cuts = self.cfg.split_after or balanced_cuts([sum(p.numel() for p in b.parameters()) for b in blocks], self.n_stages)
        if len(cuts) != self.n_stages - 1:
            raise HpmlError(f"strategy.split_after needs {self.n_stages - 1} indices, got {len(cuts)}")
        bounds = [0, *[c + 1 for c in cuts], len(blocks)]
        groups = [nn.Sequential(*blocks[a:b], _Contiguous()) for a, b in zip(bounds, bounds[1:])]
        self.full_model = model
        self.stage_ids = [self.rank + k * self.world_size for k in range(self.cfg.stages_per_rank)]
        self.stage_modules = nn.ModuleList([groups[i] for i in self.stage_ids])
        self._schedule = None
        return self.stage_modules

    def compile_model(self, mode: str) -> None:
        # The schedule calls the stage modules, not self.model: compile those in place.
        for stage in self.stage_modules:
            stage.compile(mode=None if mode == "default" else mode)

    def schedule(self):
        """Built on first use, when the loss function is known."""
        if self._schedule is None:
            timed = self.split.enabled
            stage = (lambda *a: _TimedStage(*a, strategy=self)) if timed else PipelineStage
            stages = [stage(m, i, self.n_stages, self.device) for m, i in zip(self.stage_modules, self.stage_ids)]
            cls = _SCHEDULES[self.cfg.schedule]
            first = stages if cls is ScheduleInterleaved1F1B else stages[0]
            loss_fn = (lambda *a: self.timed_compute(self.loss_fn, *a)) if timed else self.loss_fn
            self._schedule = cls(first, n_microbatches=self.cfg.n_microbatches, loss_fn=loss_fn)
        return self._schedule

    # -- the step split (strategies/split.py) -------------------------------------------
    _gap_start = None  # the end of the last compute in this step's schedule
    _received = False  # a receive was posted since then

    def posted(self, ops: list, receive: bool) -> list:
        """A stage's send or receive ops, as the schedule is about to post them."""
        if receive:
            self._received = self._received or bool(ops)
        else:
            sent = sum(op.tensor.numel() * op.tensor.element_size() for op in ops)
            self.split.add_bytes(sent, sent)
        return ops

    def timed_compute(self, fn, *args, **kwargs):
        """Run fn as compute; the gap since the last compute is bubble or communication."""
        clock = self.split
        start = clock.mark()
        if self._gap_start is not None:
            clock.add("bubble" if self._received else "exposed", self._gap_start, start)
        out = fn(*args, **kwargs)
        self._gap_start, self._received = clock.mark(), False
        return out

    def split_expectation(self) -> dict[str, Any]:
        return {"bubble_expected": pipeline_bubble_fraction(self.world_size, self.cfg.n_microbatches,
                                                            self.cfg.stages_per_rank),
                "schedule": self.cfg.schedule}

    def _run(self, batch, train: bool) -> StepOutput:
        inputs, targets = self.to_device(batch)
        if inputs.shape[0] % self.cfg.n_microbatches:
            raise HpmlError(f"batch of {inputs.shape[0]} does not split into strategy.n_microbatches="
                            f"{self.cfg.n_microbatches}; pick a dataset.batch_size divisible by it")
        first, last = 0 in self.stage_ids, self.n_stages - 1 in self.stage_ids
        args = (inputs,) if first else ()
        kwargs: dict[str, Any] = {"target": targets, "losses": []} if last else {}
        # One range for the whole schedule: forward, backward and the stages' send/recv interleave in it.
        schedule = self.schedule()  # built (a first call) before the schedule's time starts
        self._gap_start, self._received = (self.split.mark() if train else None), False
        with self.range(f"pipeline_{self.cfg.schedule}" if train else "pipeline_eval"), self.autocast():
            out = schedule.step(*args, **kwargs) if train else schedule.eval(*args, **kwargs)
        if self._gap_start is not None:  # after the last chunk: waiting for the last sends
            self.split.add("exposed", self._gap_start, self.split.mark())
            self._gap_start = None
        if not last:
            return StepOutput(torch.zeros((), device=self.device), torch.empty(0), torch.empty(0), 0)
        loss = torch.stack([l.detach().float() for l in kwargs["losses"]]).mean()
        return StepOutput(loss, self.logits_fn(out).detach(), targets, len(targets))

    def train_step(self, batch, step_optimizer: bool = True, loss_scale: float = 1.0) -> StepOutput:
        with self.split.step():
            try:
                out = self._run(batch, train=True)
            except torch.OutOfMemoryError as exc:  # its one line, exit 2
                next_micro_batch(self, exc, len(batch[1]), fresh_grads=False)
                raise
            if step_optimizer:
                with self.range("optimizer_step"):
                    self.optimizer_step()
        return out

    @torch.no_grad()
    def eval_step(self, batch) -> StepOutput:
        return self._run(batch, train=False)

    def clip_gradients(self, max_norm: float) -> None:
        """Clip by the norm over every stage's gradients, not just this rank's."""
        grads = [p.grad for p in self.stage_modules.parameters() if p.grad is not None]
        local = torch.stack([g.float().norm() ** 2 for g in grads]).sum() if grads else torch.zeros(())
        factor = (max_norm / (self.reduce(local.cpu(), "sum").sqrt() + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(factor.to(g.device))

    def unwrapped(self) -> nn.Module:
        return self.full_model

    # -- checkpoints: stages are gathered into one full state_dict on the main rank ---------
    def model_state(self) -> dict[str, torch.Tensor]:
        owned = {id(t) for t in [*self.stage_modules.parameters(), *self.stage_modules.buffers()]}
        local = {k: v.detach().cpu() for k, v in self.full_model.state_dict(keep_vars=True).items() if id(v) in owned}
        parts = self.gather_objects(local)
        return {k: v for part in parts for k, v in part.items()} if parts else {}

    def load_model_state(self, state: dict[str, torch.Tensor]) -> None:
        self.full_model.load_state_dict(state)

    def optimizer_state(self) -> dict[str, Any]:
        """Every stage's state by parameter name, merged on the main rank: any strategy loads it."""
        parts = self.gather_objects(by_name(self.optimizer, self.full_model))
        return merged(parts) if parts else {}

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        if is_by_name(state):  # this rank's stages take their parameters' state
            load_by_name(self.optimizer, self.full_model, state)
            return
        per_rank = state.get("per_rank")  # a checkpoint from before by-name states
        if per_rank is None or len(per_rank) != self.world_size:
            raise HpmlError(numbered_state_refused("pipe"))
        self.optimizer.load_state_dict(per_rank[self.rank])
