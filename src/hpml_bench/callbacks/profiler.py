"""`profiler=torch`: torch.profiler over a bounded window of training steps, per rank.

Traces go to <run>/traces/ through tensorboard_trace_handler (gzipped Chrome-trace JSON:
`tensorboard --logdir <run>` with torch-tb-profiler, Perfetto or chrome://tracing open it);
each rank also writes its top operators as a text table. The step's named ranges (data
wait, forward, backward, optimizer step, the strategy's communication) come from
record_function, which the strategy uses when the run records a trace (StepSettings.named_ranges):
the loop itself has no `if`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import (
    ProfilerAction,
    ProfilerActivity,
    profile,
    record_function,
    schedule,
    tensorboard_trace_handler,
)

from hpml_bench.callbacks.base import Callback
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.writes import atomic_write_text

# The loop's wait for the next batch. torch-tb-profiler files a range under "DataLoader" in
# its step breakdown only by this name pattern (`enumerate(DataLoader)#<...>.__next__`, what
# torch's own DataLoader iterator records) and only for events of category `cpu_op`: it drops
# every `user_annotation` (today's category of record_function ranges) that is not a
# ProfilerStep, so a plain `data_wait` range showed DataLoader = 0 us. After the run the
# traces' data-wait events are re-filed as cpu_op (finish_traces), outside the timed epochs.
DATA_WAIT_RANGE = "enumerate(DataLoader)#data_wait.__next__"


@dataclass
class ProfilerConfig:
    name: str = "none"  # none | torch
    # The window: skip_first steps (start-up), then `repeat` cycles of wait / warmup / active steps.
    skip_first: int = 5
    wait: int = 1  # steps idle at the start of each cycle
    warmup: int = 1  # steps profiled but discarded (warm-up)
    active: int = 3  # steps recorded per cycle
    repeat: int = 1  # 0 = keep cycling for the whole run (traces grow without bound)
    record_shapes: bool = False  # record operator input shapes (bigger traces)
    profile_memory: bool = False  # record tensor allocations
    with_stack: bool = False  # record Python stacks (much bigger traces)
    top_operators: int = 25  # rows of <run>/traces/rank<r>_top_ops.txt
    # CUDA only: record the allocator's history and dump a snapshot for pytorch.org/memory_viz.
    memory_snapshot: bool = False
    memory_snapshot_max_entries: int = 100000  # allocator events kept for the memory snapshot

    def __post_init__(self):
        if self.name not in ("none", "torch"):
            raise HpmlError(f"profiler={self.name}: use none or torch")
        for knob in ("skip_first", "wait", "warmup", "repeat"):
            if getattr(self, knob) < 0:
                raise HpmlError(f"profiler.{knob}={getattr(self, knob)} must be 0 or more")
        if self.active <= 0:
            raise HpmlError(f"profiler.active={self.active} must be positive")


def check_memory_snapshot(cfg: ProfilerConfig, device: str) -> None:
    """The allocator history exists only for CUDA memory: refuse it elsewhere.

    `device` is the run's device type, or the `device=` request (auto = cuda when present)."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cfg.memory_snapshot and not cuda:
        raise HpmlError("profiler.memory_snapshot=true needs a CUDA GPU (it records the CUDA allocator); "
                        "drop it on CPU, or use profiler.profile_memory=true")


class TorchProfiler(Callback):
    """Steps torch.profiler once per training step; writes traces and a top-operators table."""

    def __init__(self, cfg: ProfilerConfig, folder: RunFolder, rank: int, device: torch.device):
        check_memory_snapshot(cfg, device.type)
        self.cfg, self.rank, self.device = cfg, rank, device
        self.trace_dir = folder.traces
        self._data_wait = contextlib.nullcontext()
        self.recorded: list[int] = []  # the strategy's step indices the trace holds

    def on_fit_start(self, trainer) -> None:
        cfg = self.cfg
        activities = [ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.trace_dir.mkdir(parents=True, exist_ok=True)
        self.prof = profile(
            activities=activities,
            schedule=schedule(skip_first=cfg.skip_first, wait=cfg.wait, warmup=cfg.warmup, active=cfg.active, repeat=cfg.repeat),
            on_trace_ready=tensorboard_trace_handler(str(self.trace_dir), worker_name=f"rank{self.rank}", use_gzip=True),
            record_shapes=cfg.record_shapes, profile_memory=cfg.profile_memory, with_stack=cfg.with_stack,
        )
        if cfg.memory_snapshot:
            torch.cuda.memory._record_memory_history(max_entries=cfg.memory_snapshot_max_entries)
        self.prof.start()

    def on_fetch_start(self, trainer) -> None:
        self._data_wait = record_function(DATA_WAIT_RANGE)
        self._data_wait.__enter__()

    def on_fetch_end(self, trainer) -> None:
        self._data_wait.__exit__(None, None, None)
        self._data_wait = contextlib.nullcontext()

    def on_step_end(self, trainer, out) -> None:
        if self.prof.current_action in (ProfilerAction.RECORD, ProfilerAction.RECORD_AND_SAVE):
            self.recorded.append(trainer.strategy.split.started - 1)
        self.prof.step()

    def on_fit_end(self, trainer) -> None:
        self.prof.stop()
        if self.cfg.memory_snapshot:
            torch.cuda.memory._dump_snapshot(str(self.trace_dir / f"rank{self.rank}_memory_snapshot.pickle"))
            torch.cuda.memory._record_memory_history(enabled=None)
        atomic_write_text(self.trace_dir / f"rank{self.rank}_top_ops.txt", self.top_operators())
        finish_traces(sorted(self.trace_dir.glob(f"rank{self.rank}.*.pt.trace.json.gz")))
        if trainer.strategy.split.enabled:
            atomic_write_text(self.trace_dir / f"rank{self.rank}_split.csv", self.split_of_recorded(trainer.strategy.split))

    def split_of_recorded(self, clock) -> str:
        """hpml's step split of the steps the trace holds, one CSV row each (`hpml report --hta`
        sets it beside Holistic Trace Analysis's view of the same steps)."""
        clock.totals()  # resolves the steps whose device events were still pending
        wanted = set(self.recorded)
        lines = ["step,step_s,compute_s,comm_s,comm_exposed_s,bubble_s,comm_bytes"]
        for index, p in clock.recent:
            if index in wanted:
                compute = max(p["step_s"] - p["comm_exposed_s"] - p["bubble_s"], 0.0)
                lines.append(f"{index},{p['step_s']},{compute},{p['comm_s']},{p['comm_exposed_s']},{p['bubble_s']},"
                             f"{p['comm_bytes']}")
        return "\n".join(lines) + "\n"

    def top_operators(self) -> str:
        """key_averages sorted by self device time (CPU time when no device was traced)."""
        averages = self.prof.key_averages()
        if not len(averages):
            return (f"no steps were profiled: the run had fewer than profiler.skip_first + wait + warmup + 1 = "
                    f"{self.cfg.skip_first + self.cfg.wait + self.cfg.warmup + 1} training steps\n")
        key = "self_device_time_total" if self.device.type == "cuda" else "self_cpu_time_total"
        return averages.table(sort_by=key, row_limit=self.cfg.top_operators) + "\n"


def finish_traces(paths: list[Path]) -> None:
    """Re-file the data-wait ranges of these gzipped traces as `cpu_op`, so that the TensorBoard
    profiler plugin counts them as DataLoader time (Perfetto and chrome://tracing show them alike)."""
    import gzip
    import json
    import os

    for path in paths:
        with gzip.open(path, "rt") as f:
            trace = json.load(f)
        events = [e for e in trace.get("traceEvents", [])
                  if e.get("name") == DATA_WAIT_RANGE and e.get("cat") == "user_annotation"]
        if not events:
            continue
        for event in events:
            event["cat"] = "cpu_op"
        tmp = path.with_name(f".{path.name}.tmp")
        with gzip.open(tmp, "wt") as f:
            json.dump(trace, f)
        os.replace(tmp, path)
