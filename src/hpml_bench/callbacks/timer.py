"""The epoch timer: data_s, train_s, run_s and val_s as DESIGN.md "Timing" defines them, and
train_s split into compute, communication, bubble and overhead from what the strategy measured."""
from __future__ import annotations

import time

import torch

from hpml_bench.callbacks.base import Callback
from hpml_bench.strategies.split import split_record


class EpochTimer(Callback):
    """data_s: time blocked on the loader; train_s: H2D + forward + loss + backward + step +
    metric update; run_s: the epoch's wall time. Asynchronous GPU work is counted either by a
    synchronize at each step's end (timing=exact) or by CUDA events (timing=events).
    A validation inside the epoch (trainer.val_every_steps) is left out of run_s: the trainer
    adds it to the epoch's val_s, so run_s + val_s stays the epoch's wall time."""

    def __init__(self, timing: str = "exact"):
        self.timing = timing
        self.in_epoch = False  # between an epoch's first step and its end

    def on_train_epoch_start(self, trainer) -> None:
        self.sync = trainer.strategy.synchronize
        self.use_events = self.timing == "events" and trainer.strategy.device.type == "cuda"
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.data_s = self.train_s = self.mid_val_s = 0.0
        self.in_epoch = True
        self.sync()
        self.split_before = trainer.strategy.split.totals()  # the strategy's clock, read (never reset)
        self.epoch_start = time.perf_counter()

    def on_fetch_start(self, trainer) -> None:
        self.fetch_start = time.perf_counter()

    def on_fetch_end(self, trainer) -> None:
        self.step_start = time.perf_counter()
        self.data_s += self.step_start - self.fetch_start
        if self.use_events:
            self.events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
            self.events[-1][0].record()

    def on_step_end(self, trainer, out) -> None:
        if self.use_events:
            self.events[-1][1].record()
        else:
            self.sync()
            self.train_s += time.perf_counter() - self.step_start

    def on_train_epoch_end(self, trainer, record: dict) -> None:
        self.sync()
        record["run_s"] = time.perf_counter() - self.epoch_start - self.mid_val_s
        self.in_epoch = False
        if self.use_events:
            self.train_s = sum(start.elapsed_time(end) for start, end in self.events) / 1000
        record["data_s"] = self.data_s
        record["train_s"] = self.train_s
        if trainer.strategy.split.enabled:
            record.update(split_record(self.split_before, trainer.strategy.split.totals(), self.train_s))

    def on_validation_start(self, trainer) -> None:
        self.sync()
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, record: dict) -> None:
        self.sync()
        record["val_s"] = time.perf_counter() - self.val_start
        if self.in_epoch:  # a mid-epoch validation (trainer.val_every_steps)
            self.mid_val_s += record["val_s"]
