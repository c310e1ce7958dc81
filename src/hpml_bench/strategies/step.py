"""One training step, for every strategy: forward, loss and backward in micro-batches, the
optimizer step with clipping, skipped non-finite steps and the fp16 scaler, and evaluation.

`StepLoop` is a mixin of Strategy (strategies/base.py): it uses the strategy's model, optimizer,
loss, scaler, autocast, ranges and collectives, and strategies override its hooks (grad_sync,
clip_gradients, backward_range) or train_step itself (the pipeline).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.faults.nonfinite import all_finite
from hpml_bench.faults.oom import next_micro_batch

# A simulated out-of-memory above this micro-batch size (tests on CPU); 0 = none.
oom_above = int(os.environ.get("HPML_SIMULATE_OOM_ABOVE", "0") or 0)


_NOTHING = contextlib.nullcontext()  # reentrant: one instance serves every step

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
_COMPILE_ALIASES = {"false": "off", "none": "off", "no": "off", "true": "default", "yes": "default"}


def compile_mode(value) -> str:
    """trainer.compile as one of COMPILE_MODES (booleans and their spellings as aliases)."""
    mode = str(value).strip().lower()
    mode = _COMPILE_ALIASES.get(mode, mode)
    if mode not in COMPILE_MODES:
        raise HpmlError(f"trainer.compile={value}: use one of {', '.join(COMPILE_MODES)} (or true/false)")
    return mode


@dataclass
class StepSettings:
    """The trainer knobs that shape a step (copied from TrainerConfig)."""

    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    compile: Any = "off"  # off | default | reduce-overhead | max-autotune (True/False: default/off)
    grad_clip_norm: Optional[float] = None
    # trainer.on_nonfinite=skip: drop an optimizer step whose gradients are NaN/inf.
    skip_nonfinite: bool = False
    # trainer.auto_microbatch: on out-of-memory, halve the micro-batch and accumulate.
    auto_microbatch: bool = False
    # trainer.auto_microbatch_agree_steps: batches of each epoch in which several ranks agree on
    # an out-of-memory (strategies/agreement.py).
    agree_steps: int = 3
    # profiler=torch: name the step's parts (forward, backward, optimizer step, communication)
    # with torch.profiler.record_function, so the trace shows them; otherwise a no-op.
    named_ranges: bool = False
    # trainer.step_split: time each step's communication and bubble (strategies/split.py).
    split: bool = True


@dataclass
class StepOutput:
    loss: torch.Tensor  # detached, mean over the batch
    logits: torch.Tensor  # detached, what metrics score
    targets: torch.Tensor
    n: int  # samples in the batch


class StepLoop:
    """The step code of Strategy (see the module docstring)."""

    def train_step(self, batch, step_optimizer: bool = True, loss_scale: float = 1.0) -> StepOutput:
        """Forward, loss, backward; an optimizer (and scheduler) step when step_optimizer.

        loss_scale divides the loss for gradient accumulation over several calls.
        """
        with self.split.step():
            return self._train_step(batch, step_optimizer, loss_scale)

    def _train_step(self, batch, step_optimizer: bool, loss_scale: float) -> StepOutput:
        inputs, targets = self.to_device(batch)
        fresh = self._fresh_grads  # no earlier batch of the accumulation window added gradients
        agreeing = self.agreement.start_step()  # several ranks: they agree on an out-of-memory
        while True:
            failure = None
            try:
                out = self._forward_backward(inputs, targets, step_optimizer, loss_scale, agreeing)
            except torch.OutOfMemoryError as exc:
                failure = exc
            if agreeing and not getattr(failure, "in_backward", False):  # every rank learns whether any
                failure = self.agreement.settle(failure)  # ran out, once all are done with the step
            if failure is None:
                break
            self.optimizer.zero_grad(set_to_none=True)  # a retry starts the window afresh
            self.after_out_of_memory()
            # raises the one line, or says which smaller micro-batch every rank retries with
            agreed = agreeing and not getattr(failure, "in_backward", False)
            self.micro_batch = next_micro_batch(self, failure, len(targets), fresh, agreed)
            self.agreement.open()
            agreeing = self.agreement.start_step()
        if agreeing and step_optimizer and self.defers_sync:
            self.sync_gradients()
        self._fresh_grads = step_optimizer
        if step_optimizer:
            with self.range("optimizer_step"):
                self.optimizer_step()
        return out

    micro_batch: Optional[int] = None  # set by trainer.auto_microbatch after an out-of-memory
    _fresh_grads = True  # no gradient accumulated since the last optimizer step

    def _forward_backward(self, inputs, targets, step_optimizer: bool, loss_scale: float,
                          agreeing: bool = False) -> StepOutput:
        """Forward and backward over the batch, in micro-batches of self.micro_batch when set
        (each loss weighted by its share, so the gradients are the whole batch's)."""
        n = len(targets)
        size = self.micro_batch or n
        losses, logits = [], []
        for start in range(0, n, size):
            x, y = inputs[start:start + size], targets[start:start + size]
            self.agreement.point()  # before this micro-batch's collectives (DDP's buffer broadcast)
            if oom_above and len(y) > oom_above:  # HPML_SIMULATE_OOM_ABOVE: tests on CPU
                raise torch.OutOfMemoryError(f"simulated out of memory: micro-batch {len(y)} > {oom_above}")
            # DDP's no_sync must cover forward and backward together (synced on the last one);
            # in an agreement window DDP syncs after the step instead (sync_gradients).
            with self.grad_sync(step_optimizer and start + size >= n and not (agreeing and self.defers_sync)):
                with self.range("forward"), self.autocast():
                    outputs = self.model(x)
                    loss = self.loss_fn(outputs, y)
                guard = self._backward_failure() if agreeing and self.backward_collectives else _NOTHING
                with self.range(self.backward_range), guard:
                    share = loss_scale if len(y) == n else loss_scale * len(y) / n
                    self.scaler.scale(loss * share).backward()
                self.backward_done()
            self._fresh_grads = False
            losses.append(loss.detach() if len(y) == n else loss.detach() * (len(y) / n))
            logits.append(self.logits_fn(outputs).detach())
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        return StepOutput(loss, logits[0] if len(logits) == 1 else torch.cat(logits), targets, n)

    # DDP names it "backward+allreduce": its gradient all-reduce overlaps the backward pass.
    backward_range = "backward"

    def backward_done(self) -> None:
        """After each backward: a strategy whose collectives overlap it marks there how long
        the step waited for them once compute was done (DDP, FSDP)."""

    def grad_sync(self, sync: bool):
        """Context that skips gradient all-reduce on accumulation steps (DDP's no_sync)."""
        return contextlib.nullcontext()

    # FSDP: the backward all-gathers and reduce-scatters, which no rank can leave part-way.
    backward_collectives = False

    @contextlib.contextmanager
    def _backward_failure(self):
        """An out-of-memory in a backward with collectives: not agreed on (the others wait in
        them), so that rank reports it alone (faults/oom.py) and the launcher stops the rest."""
        try:
            yield
        except torch.OutOfMemoryError as exc:
            exc.in_backward = True
            raise

    # DDP: in an agreement window the backward runs without its gradient all-reduce (a rank
    # that ran out of memory could not join it) and sync_gradients() averages them after.
    defers_sync = False

    def sync_gradients(self) -> None:
        """The gradient average deferred by defers_sync (none on one process)."""

    def after_out_of_memory(self) -> None:
        """Free what the failed step held before the retry."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # Optimizer steps dropped in a row for NaN/inf gradients (trainer.on_nonfinite=skip).
    nonfinite_in_a_row = 0
    nonfinite_dropped = 0  # in the whole run

    def optimizer_step(self) -> None:
        if self.step.skip_nonfinite and self._nonfinite_gradients():
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_in_a_row += 1
            self.nonfinite_dropped += 1
            return
        self.nonfinite_in_a_row = 0
        if self.step.grad_clip_norm:
            self.scaler.unscale_(self.optimizer)
            self.clip_gradients(self.step.grad_clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:  # trainer.ema_decay: the average follows every step taken
            self.ema.update(self.unwrapped())

    def _nonfinite_gradients(self) -> bool:
        """Any rank's gradients NaN/inf? One host sync per optimizer step, as GradScaler's own
        skip costs (fp16 leaves it to GradScaler, whose inf steps are expected)."""
        if self.scaler.is_enabled():
            return False
        ok = all_finite([p.grad for g in self.optimizer.param_groups for p in g["params"]])
        return bool(self.reduce((~ok).float().reshape(1).cpu(), "max").item())

    def clip_gradients(self, max_norm: float) -> None:
        nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)

    ema = None  # trainer.ema_decay: the weights' moving average (strategies/ema.py), else None
    eval_loss_fn = None  # validation's loss (Strategy.prepare sets it)

    @torch.no_grad()
    def eval_step(self, batch, averaged: bool = False) -> StepOutput:
        """The loss and logits of a batch; `averaged`: of the EMA weights."""
        inputs, targets = self.to_device(batch)
        with self.autocast():
            outputs = (self.ema.module if averaged else self.model)(inputs)
            loss = self.eval_loss_fn(outputs, targets)
        return StepOutput(loss, self.logits_fn(outputs), targets, len(targets))

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)
        if mode:  # a new epoch: memory may grow again (validation ran, a backbone unfroze)
            self.agreement.open()
