"""Where a training step's seconds went: compute, communication (all of it, and the part
compute did not hide), the pipeline's bubble. Each strategy marks its own communication on the
`SplitClock` it owns; the epoch timer reads the totals and adds the loop's overhead.

A mark is the host clock on CPU (gloo's collectives block the host or finish on its threads)
and a CUDA event on the current stream on a GPU (the device's own timeline: a collective on
NCCL's stream, the compute stream waiting for it); events are read back only once they have
completed, so measuring never adds a synchronize to the step.
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

# The parts of a step, in seconds summed over steps (comm_bytes / comm_bus_bytes: bytes; steps: count).
PARTS = ("steps", "step_s", "comm_s", "comm_exposed_s", "bubble_s", "comm_bytes", "comm_bus_bytes")
# Per-step records kept (index, parts) for the profiler's comparison with Holistic Trace Analysis.
RECENT_STEPS = 1024


def _env_float(name: str) -> float:
    return float(os.environ.get(name, "0") or 0)


def slow_rank_delay_s(rank: int) -> float:
    """HPML_SIMULATE_SLOW_RANK=<rank>:<seconds>: that rank sleeps this long in each step (a
    straggler, for tests); 0 elsewhere."""
    spec = os.environ.get("HPML_SIMULATE_SLOW_RANK", "")
    if ":" not in spec:
        return 0.0
    who, seconds = spec.split(":", 1)
    return float(seconds) if int(who) == rank else 0.0


def comm_delay_s() -> float:
    """HPML_SIMULATE_COMM_DELAY_S: every gradient bucket's all-reduce completes this much later
    (a slow link, for tests)."""
    return _env_float("HPML_SIMULATE_COMM_DELAY_S")


def pipeline_bubble_fraction(stages: int, microbatches: int, stages_per_rank: int = 1) -> float:
    """The share of a pipeline step each stage idles: (p - 1) / (v*m + p - 1) for p ranks, m
    micro-batches and v stages per rank (GPipe and 1F1B: v = 1; Narayanan et al. 2021)."""
    p, m, v = stages, microbatches, stages_per_rank
    return (p - 1) / (v * m + p - 1)


def union_length(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one interval (overlapping collectives counted once)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


@dataclass
class _Step:
    start: Any
    end: Any = None
    index: int = 0  # the how-manyth training step of this process (from 0)
    # (kind, start mark, end mark): kind is comm (a collective, hidden or not), exposed (compute
    # waited on communication) or bubble (a pipeline stage idle for its neighbour)
    intervals: list[tuple[str, Any, Any]] = field(default_factory=list)
    comm_bytes: float = 0.0
    bus_bytes: float = 0.0


class SplitClock:
    """One rank's steps, split. `step()` brackets a training step; the strategy adds intervals
    and bytes while it runs; `totals()` sums the finished steps (PARTS)."""

    def __init__(self, device: Optional[torch.device] = None, enabled: bool = True, rank: int = 0):
        self.cuda = device is not None and device.type == "cuda"
        self.enabled = enabled
        self.totals_so_far = dict.fromkeys(PARTS, 0.0)
        self.recent: deque[tuple[int, dict[str, float]]] = deque(maxlen=RECENT_STEPS)  # the last steps, resolved
        self.current: Optional[_Step] = None
        self.started = 0  # training steps begun
        self._pending: list[_Step] = []
        self._slow_s = slow_rank_delay_s(rank)

    def mark(self, stream: Optional[torch.cuda.Stream] = None) -> Any:
        """Now: the host clock, or an event on `stream` (default: the current CUDA stream)."""
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(stream)
        return event

    @contextlib.contextmanager
    def step(self):
        """Bracket one training step (a no-op when measuring is off)."""
        if not self.enabled:
            yield
            return
        self.current = _Step(self.mark(), index=self.started)
        self.started += 1
        if self._slow_s:  # a simulated straggler: its compute takes longer
            time.sleep(self._slow_s)
        try:
            yield
        finally:
            self.current.end = self.mark()
            self._pending.append(self.current)
            self.current = None
            self._resolve(block=False)

    def add(self, kind: str, start: Any, end: Any) -> None:
        """An interval of the running step (none outside a training step: validation)."""
        step = self.current
        if step is not None:
            step.intervals.append((kind, start, end))

    def add_bytes(self, payload: float, bus: float) -> None:
        """Bytes handed to a collective, and the bytes each rank's link carries for it (a ring
        all-reduce: 2(n-1)/n of the payload), from which the achieved bandwidth follows."""
        step = self.current
        if step is not None:
            step.comm_bytes += payload
            step.bus_bytes += bus

    def totals(self) -> dict[str, float]:
        """PARTS summed over every finished step (waits for the device's pending events)."""
        self._resolve(block=True)
        return dict(self.totals_so_far)

    # -- resolving marks into seconds -------------------------------------------------
    def _seconds(self, a: Any, b: Any) -> float:
        return (b - a) if not self.cuda else a.elapsed_time(b) / 1000

    @staticmethod
    def _events(step: _Step) -> list:
        # a collective's end may be marked on another stream (NCCL's, FSDP's): every mark must
        # have completed before elapsed_time may read it
        return [step.start, step.end, *(m for _, a, b in step.intervals for m in (a, b))]

    def _resolve(self, block: bool) -> None:
        while self._pending:
            step = self._pending[0]
            if self.cuda:
                if not block and not all(e.query() for e in self._events(step)):
                    return
                for event in self._events(step):
                    event.synchronize()
            self._add(step.index, self.resolve_step(self._pending.pop(0)))

    def resolve_step(self, step: _Step) -> dict[str, float]:
        """One step's parts in seconds: comm_s is the union of communication and exposed
        intervals (what overlaps is counted once)."""
        at = lambda mark: self._seconds(step.start, mark)  # noqa: E731 - offsets from the step's start
        spans = {"comm": [], "exposed": [], "bubble": []}
        for kind, a, b in step.intervals:
            spans[kind].append((at(a), max(at(a), at(b))))
        exposed = union_length(spans["exposed"])
        return {"steps": 1.0, "step_s": at(step.end), "comm_s": union_length(spans["comm"] + spans["exposed"]),
                "comm_exposed_s": exposed, "bubble_s": sum(b - a for a, b in spans["bubble"]),
                "comm_bytes": step.comm_bytes, "comm_bus_bytes": step.bus_bytes}

    def _add(self, index: int, parts: dict[str, float]) -> None:
        for key, value in parts.items():
            self.totals_so_far[key] += value
        self.recent.append((index, parts))


def split_record(before: dict[str, float], after: dict[str, float], train_s: float) -> dict[str, Optional[float]]:
    """An epoch's split from the clock's totals at its start and end and the timer's train_s:
    train_s = compute_s + comm_exposed_s + bubble_s + overhead_s (overhead: the loop's own time
    outside the strategy's step: metrics, callbacks, the loader's hand-over)."""
    d = {key: after[key] - before[key] for key in PARTS}
    steps = max(d["steps"], 1.0)
    compute = max(d["step_s"] - d["comm_exposed_s"] - d["bubble_s"], 0.0)
    per_step_comm_s = d["comm_s"] / steps
    gbps = d["comm_bus_bytes"] / steps * 8 / 1e9 / per_step_comm_s if d["comm_bus_bytes"] and per_step_comm_s > 0 else None
    return {"compute_s": compute, "comm_s": d["comm_s"], "comm_exposed_s": d["comm_exposed_s"], "bubble_s": d["bubble_s"],
            "overhead_s": max(train_s - d["step_s"], 0.0), "comm_bytes": d["comm_bytes"] / steps, "comm_gbps": gbps}
