"""Checkpoints: last.pt every N epochs, best.pt when the monitored metric (trainer.monitor)
improves at an epoch's end, ema.pt (the weights' moving average, trainer.ema_decay) beside last.pt."""
from __future__ import annotations

import sys

from hpml_bench.callbacks.base import Callback
from hpml_bench.errors import WriteError
from hpml_bench.runfolder import RunFolder
from hpml_bench.strategies.ema import ema_weights


class Checkpointer(Callback):
    """Runs on every rank (a sharded strategy gathers collectively); the strategy writes
    on the main rank only, to a temp file that is then renamed."""

    def __init__(self, folder: RunFolder, every_epochs: int, on_write_error: str = "stop", keep: int = 1):
        self.folder, self.every, self.on_write_error, self.keep = folder, every_epochs, on_write_error, keep
        self.best = None

    def on_fit_start(self, trainer) -> None:
        # trainer.monitor (the task's metric unless set) and its mode, as the trainer's goals read them
        self.monitor, self.higher = trainer.goals.monitor, trainer.goals.monitor_mode == "max"
        scores = [r[self.monitor] for r in trainer.history if self.monitor in r]
        if scores:  # resumed: best so far
            self.best = max(scores) if self.higher else min(scores)

    def on_epoch_end(self, trainer, record: dict) -> None:
        last_epoch = record["epoch"] == trainer.cfg.epochs or trainer.goals.stop_reason is not None  # the run ends
        if not (record["epoch"] % self.every == 0 or last_epoch):
            return
        state = trainer.state_dict()
        try:
            trainer.strategy.save_checkpoint(self.folder.last, state, self.keep)
            if state.get("ema") is not None:  # trainer.ema_decay: the average as a model's checkpoint
                key = self.monitor.replace("val_", "val_ema_", 1)
                trainer.strategy.save_checkpoint(self.folder.checkpoint("ema"),
                                                 {"model": ema_weights(state["ema"]), "epoch": state["epoch"], key: record.get(key)})
            score = record.get(self.monitor)
            if score is not None and (self.best is None or (score > self.best if self.higher else score < self.best)):
                trainer.strategy.save_checkpoint(self.folder.checkpoint("best"), {"model": state["model"], "epoch": state["epoch"], self.monitor: score})
                self.best = score
        except WriteError as exc:
            if self.on_write_error != "warn":
                raise
            print(f"warning: {exc}; training goes on (trainer.on_write_error=warn), the next checkpoint tries again",
                  file=sys.stderr, flush=True)
