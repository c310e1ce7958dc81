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
            print(f"warning: epoch {record['epoch']} spent {share:.0%} of its time waiting for data; "
                  f"{self._advice(trainer.train_loader)}", file=sys.stderr)

    @staticmethod
    def _advice(loader) -> str:
        if getattr(loader.dataset, "in_process", False):
            # The cache is read in this process: workers would not help, the step is just short.
            return ("the cached batches are read and normalised here, ahead of each step, and the step is "
                    "shorter than that; a larger dataset.batch_size or a GPU (where it runs on the device) helps")
        return (f"raise dataset.num_workers (now {loader.num_workers}) or pre-decode it with "
                f"`hpml prepare` and dataset.cache=true")
