"""Warn once per run when waiting for data takes over 20% of an epoch."""
from __future__ import annotations

import sys

from hpml_bench.callbacks.base import Callback

THRESHOLD = 0.20


class DataStallWarning(Callback):
    def __init__(self):
        self.warned = False

    def on_epoch_end(self, trainer, record: dict) -> None:
        if self.warned or record["warmup"] and record["epoch"] < trainer.cfg.epochs or record["run_s"] <= 0:
            return
        share = record["data_s"] / record["run_s"]
        if share > THRESHOLD:
            self.warned = True
            print(f"warning: epoch {record['epoch']} spent {share:.0%} of its time waiting for data; raise "
                  f"dataset.num_workers (now {trainer.train_loader.num_workers}) or pre-decode it with "
                  f"`hpml prepare` and dataset.cache=true", file=sys.stderr)
