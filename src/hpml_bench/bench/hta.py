"""`hpml report --hta`: Holistic Trace Analysis's view of a run's profiler traces, per rank,
beside hpml's own step split of the same (profiled) steps.

HTA reads the GPU kernels of each rank's Kineto trace: compute kernels, communication kernels
(NCCL) and the idle time between them; its communication/computation overlap says how much of
the communication compute hid, so exposed = communication x (1 - overlap). hpml's split of the
steps the trace holds is traces/rank<r>_split.csv (written by the profiler callback). A CPU run's
trace has no GPU stream: HTA has nothing to break down, and the view says so in one line.
"""
from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder

_TRACE = re.compile(r"rank(\d+)\.\d+\.pt\.trace\.json(\.gz)?$")
HPML_COLUMNS = ("steps", "step_s", "compute_s", "comm_s", "comm_exposed_s", "bubble_s")
HTA_COLUMNS = ("hta_compute_s", "hta_idle_s", "hta_comm_s", "hta_overlap", "hta_exposed_s")
NO_GPU = ("has no GPU stream (a CPU run): HTA's temporal breakdown and communication/computation overlap "
          "need GPU kernels; hpml's split of the same steps is measured on the host")


def trace_files(traces: Path) -> dict[int, str]:
    """Each rank's newest Kineto trace in the folder (the last profiler cycle)."""
    found: dict[int, Path] = {}
    for path in sorted(traces.glob("rank*.pt.trace.json*"), key=lambda p: p.stat().st_mtime):
        match = _TRACE.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return {rank: str(path) for rank, path in sorted(found.items())}


def hpml_split(traces: Path, rank: int) -> dict[str, float]:
    """hpml's split summed over the profiled steps of `rank` (empty without the file)."""
    path = traces / f"rank{rank}_split.csv"
    if not path.is_file():
        return {}
    steps = pd.read_csv(path)
    return {"steps": len(steps), **{key: float(steps[key].sum()) for key in HPML_COLUMNS[1:]}}


def _hta_rank(trace_df: pd.DataFrame, symbols: list[str]) -> Optional[dict[str, float]]:
    """HTA's numbers for one rank's trace (seconds), None when it has no GPU kernels."""
    from hta.utils.utils import KernelType, get_kernel_type, merge_kernel_intervals  # the trace extra, only here

    kernels = trace_df[trace_df["stream"].ne(-1)].copy()
    if kernels.empty:
        return None
    kernels["end"] = kernels["ts"] + kernels["dur"]
    kinds = kernels["name"].map(lambda i: get_kernel_type(symbols[i]))
    merged = {kind: merge_kernel_intervals(kernels[kinds.eq(kind.name)][["ts", "end"]].copy())
              for kind in (KernelType.COMPUTATION, KernelType.COMMUNICATION)}
    busy = merge_kernel_intervals(kernels[["ts", "end"]].copy())
    span = busy["end"].max() - busy["ts"].min()
    total = {kind: float((m["end"] - m["ts"]).sum()) for kind, m in merged.items()}
    comm = total[KernelType.COMMUNICATION]
    return {"hta_compute_s": total[KernelType.COMPUTATION] / 1e6, "hta_idle_s": (span - (busy["end"] - busy["ts"]).sum()) / 1e6,
            "hta_comm_s": comm / 1e6, "_comm_us": comm}


def hta_view(run: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per rank: hpml's split of the profiled steps and HTA's view of the same trace;
    and the lines to print (a rank whose trace has no GPU stream)."""
    try:
        from hta.trace_analysis import TraceAnalysis  # the trace extra, only for --hta
    except ImportError:
        raise HpmlError("hpml report --hta needs Holistic Trace Analysis: pip install 'hpml-bench[trace]'") from None
    traces = RunFolder(run).traces
    files = trace_files(traces) if traces.is_dir() else {}
    if not files:
        raise HpmlError(f"{run} has no profiler traces; train it with profiler=torch to read it with --hta")
    logging.getLogger("hta").setLevel(logging.ERROR)  # HTA warns of every file it parses and of ns rounding
    with warnings.catch_warnings():  # HTA's own use of pandas APIs pandas deprecates: not the user's to fix
        warnings.filterwarnings("ignore", module=r"hta\.")
        analysis = TraceAnalysis(trace_files=files, trace_dir=str(traces))
    symbols = analysis.t.symbol_table.get_sym_table()
    overlap = None
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for rank, trace_df in sorted(analysis.t.traces.items()):
        row: dict[str, Any] = {"run": str(run), "rank": rank, **hpml_split(traces, rank)}
        seen = _hta_rank(trace_df, symbols)
        if seen is None:
            notes.append(f"{run} rank {rank}: the trace {NO_GPU}")
        else:
            if overlap is None:
                overlap = analysis.get_comm_comp_overlap(visualize=False).set_index("rank")["comp_comm_overlap_ratio"]
            ratio = float(overlap.get(rank, 0.0)) if seen.pop("_comm_us") else 0.0
            row.update(seen, hta_overlap=ratio, hta_exposed_s=seen["hta_comm_s"] * (1 - ratio))
        rows.append(row)
    return pd.DataFrame(rows), notes
