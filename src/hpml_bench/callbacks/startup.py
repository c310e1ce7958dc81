"""startup_s: seconds from the process's start to the end of its first training step.

Every run and every bench cell pays its start-up (imports, config, model, data); recording it
in summary.json makes it measurable (docs: "Start-up")."""
from __future__ import annotations

import os
import time

from hpml_bench.callbacks.base import Callback
from hpml_bench.started import IMPORTED_AT


def process_age_s() -> float:
    """Seconds since this process started (Linux: /proc), else since hpml_bench was imported."""
    try:
        with open("/proc/self/stat") as f:
            # Field 22 (starttime, clock ticks after boot); the command name (field 2) may hold
            # spaces, so count from the closing parenthesis.
            start_ticks = int(f.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - IMPORTED_AT


class StartupClock(Callback):
    """Writes info["startup_s"] (which summary.json carries) at the first step's end; a resumed
    run's first step counts the same way."""

    def __init__(self, info: dict):
        self.info, self.done = info, False

    def on_step_end(self, trainer, out) -> None:
        if not self.done:
            trainer.strategy.synchronize()  # once: the step has run, not only been queued
            self.info["startup_s"] = round(process_age_s(), 3)
            self.done = True
