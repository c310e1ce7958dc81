"""Non-finite loss or weights (trainer.on_nonfinite=stop): watched on the device, read lazily.

Each step keeps a reference to its (device) loss, no kernel and no host sync; the trainer
reads them, stacked, only at check points (every trainer.stop_check_every steps, before any
checkpoint, at the epoch's end), so a GPU run gains no synchronization per step. A check that
finds a NaN/inf loss names the first such step of the epoch and raises NonFiniteError (exit 3)
before anything is written, so checkpoints/last.pt keeps the last finite model. At the epoch's
end the weights are checked too: non-finite gradients of the last steps show up there before
the loss of a next step could show them.

on_nonfinite=skip is done by the strategy (Strategy.optimizer_step drops the step, as GradScaler
does); the trainer only stops after trainer.max_nonfinite_steps dropped steps in a row.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from hpml_bench.errors import NonFiniteError

CAUSES = ("usual causes: a learning rate too high (optimizer.lr={lr:g}{now}), fp16 without loss scaling, "
          "bad data (NaN/inf inputs or labels)")


def all_finite(tensors) -> torch.Tensor:
    """One bool tensor on the tensors' device: every element of every tensor is finite (no sync)."""
    local = [t.to_local() if hasattr(t, "to_local") else t for t in tensors]  # FSDP's DTensors: own shard
    local = [t.detach() for t in local if t is not None and t.numel()]
    if not local:
        return torch.ones((), dtype=torch.bool)
    # The inf-norm (max |x|) is NaN/inf exactly when an element is, and cannot overflow.
    return torch.isfinite(torch.nn.utils.get_total_norm(local, norm_type=float("inf")))


class FiniteWatch:
    """The losses of the steps since the last check, on the device; `check` reads them (one sync).

    It reports (raises NonFiniteError); the trainer acts. `strategy` gives the collectives and the
    optimizer's state; `saved()` says whether a finite checkpoint was written (the line says so)."""

    def __init__(self, mode: str, max_in_a_row: int, strategy, saved: Callable[[], bool] = lambda: False):
        self.mode, self.max_in_a_row = mode, max_in_a_row
        self.strategy, self.saved = strategy, saved
        self.losses: list[torch.Tensor] = []  # unchecked losses, from batch `checked` on
        self.first = 0  # the epoch's first batch index (a mid-epoch resume starts later)
        self.checked = 0  # batches first..first+checked-1 are known finite
        self.dropped_before = 0

    def start_epoch(self, steps: int, first: int, device: torch.device) -> None:
        self.losses, self.first, self.checked = [], first, 0

    def see(self, i: int, loss: torch.Tensor) -> None:
        if self.mode == "stop":
            self.losses.append(loss)  # a reference: the cheapest thing a step can do

    def check(self, epoch: int, i: int) -> None:
        """Raise NonFiniteError if a loss up to batch i (0-based) was NaN/inf on any rank."""
        strategy = self.strategy
        if self.mode != "stop" or i + 1 - self.first <= self.checked:
            return
        window = torch.stack([loss.detach().float().reshape(()) for loss in self.losses]) if self.losses else torch.zeros(1)
        bad = ~torch.isfinite(window)
        # Earliest bad step over ranks as a max of (steps after it); 0 = all finite.
        after = torch.where(bad.any(), (len(window) - bad.int().argmax()).float(), 0.0)
        after = int(strategy.reduce(after.reshape(1).cpu(), "max").item())
        if after:
            k = len(window) - after
            value = window[k].item() if k >= 0 else float("nan")
            raise NonFiniteError(f"non-finite loss ({value}) at epoch {epoch + 1} step {self.first + self.checked + k + 1} "
                                 f"(trainer.on_nonfinite=stop); {_causes(strategy)}; {self._kept()}")
        self.checked += len(self.losses)
        self.losses = []

    def check_weights(self, epoch: int) -> None:
        """At the epoch's end, before any checkpoint: the weights this rank holds are finite."""
        strategy = self.strategy
        ok = all_finite([p for g in strategy.optimizer.param_groups for p in g["params"]])
        if strategy.reduce((~ok).float().reshape(1).cpu(), "max").item():
            raise NonFiniteError(f"non-finite weights after epoch {epoch + 1} (NaN/inf gradients; "
                                 f"trainer.on_nonfinite={self.mode}); {_causes(strategy)}; {self._kept()}")

    def report_dropped(self, epoch: int) -> None:
        """skip: say once per epoch how many optimizer steps were dropped (main rank)."""
        dropped = self.strategy.nonfinite_dropped - self.dropped_before
        self.dropped_before = self.strategy.nonfinite_dropped
        if dropped and self.strategy.is_main:
            print(f"hpml: epoch {epoch + 1}: dropped {dropped} optimizer step(s) with non-finite gradients "
                  f"(trainer.on_nonfinite=skip)", file=sys.stderr, flush=True)

    def check_dropped(self, epoch: int, i: int) -> None:
        """skip: stop after max_in_a_row dropped optimizer steps in a row (a host counter)."""
        if self.mode == "skip" and self.strategy.nonfinite_in_a_row >= self.max_in_a_row:
            raise NonFiniteError(f"{self.strategy.nonfinite_in_a_row} non-finite optimizer steps in a row up to "
                                 f"epoch {epoch + 1} step {i + 1} (trainer.max_nonfinite_steps={self.max_in_a_row}); "
                                 f"{_causes(self.strategy)}; {self._kept()}")

    def _kept(self) -> str:
        if not self.saved():
            return "nothing was saved"
        return ("nothing non-finite was saved: checkpoints/last.pt holds the last finite model "
                "(resume=<run folder> after the fix)")


def _causes(strategy) -> str:
    """The configured learning rate, not the scheduled one: in a warm-up the current rate is
    near 0 and would look innocent (LRScheduler keeps the configured one as `initial_lr`)."""
    group = strategy.optimizer.param_groups[0]
    peak, now = group.get("initial_lr", group["lr"]), group["lr"]
    return CAUSES.format(lr=peak, now="" if now == peak else f", {now:g} at this step")
