"""From run folders to tables: one row per run, medians per cell, speedup against a baseline."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import pandas as pd
from rich.table import Table

from hpml_bench.runfolder import RunFolder

# summary.json's medians over the measured (non-warm-up) epochs.
TIMES = ("data_s", "train_s", "run_s", "val_s", "samples_per_s", "mem_peak_gib")
# Achieved TFLOP/s and MFU (summary medians; absent in older runs or without a FLOP count / peak).
RATES = ("tflops", "mfu")
MONITORS = ("val_acc", "val_miou")  # the final score a row reports: the first present
# Where a run recorded them: the step split of train_s (distributed strategies) and the GPUs'
# state (GPU runs): medians over the measured epochs (comm_bytes: per step).
SPLIT = ("compute_s", "comm_s", "comm_exposed_s", "bubble_s", "overhead_s", "comm_bytes", "comm_gbps")
GPU_STATE = ("gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "gpu_power_w", "gpu_temp_c")
# Text a GPU run's cell carries from summary.json's `hardware` (the same for every repeat, or listed).
GPU_TEXT = ("gpu", "driver", "gpu_throttle")
# Time to target (summary.json; absent in runs from before targets): shown when a run had a target.
TARGET_DISPLAY = ("time_to_target_s", "epochs_to_target", "ttt_speedup")


def run_row(run_dir: Path) -> dict[str, Any]:
    """One run's numbers: medians of its measured epochs, its final score, world size."""
    summary = RunFolder(run_dir).read_summary()
    row: dict[str, Any] = {key: summary[f"median_{key}"] for key in TIMES}
    row.update({key: summary.get(f"median_{key}") for key in (*RATES, *SPLIT)})
    row.update({key: summary.get(key) for key in ("bubble_fraction", "bubble_expected", "comm_bytes_expected")})
    row.update({"flops_per_sample": summary.get("flops_per_sample"), "peak_tflops": summary.get("peak_tflops")})
    row.update({key: summary.get(f"median_{key}", summary.get(key)) for key in GPU_STATE
                if f"median_{key}" in summary or key in summary})
    row.update(hardware_row(summary.get("hardware")))
    final = summary.get("final", {})
    metric = next((m for m in MONITORS if m in final), None)
    row.update({"metric": metric, "metric_value": final.get(metric) if metric else None,
                "world_size": summary.get("world_size", 1), "measured_epochs": len(summary.get("measured_epochs", []))})
    row.update(goal_row(summary))
    return row


def hardware_row(hardware: Optional[dict]) -> dict[str, Any]:
    """A GPU run's hardware in a bench row: its GPUs' names, the driver, the throttle reasons."""
    if not hardware:
        return {}
    names = sorted({g["name"] for g in hardware.get("gpus", []) if g.get("name")})
    return {"gpu": " + ".join(names) or None, "driver": hardware.get("driver"), "gpu_throttle": hardware.get("throttle")}


def goal_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's target, time and epochs to it (null and target_reached false when never reached),
    its monitored metric and sweep objective, and its trial number in a sweep."""
    objective = summary.get("objective") or {}
    return {"target": summary.get("target"), "target_reached": summary.get("target_reached"),
            "time_to_target_s": summary.get("time_to_target_s"), "epochs_to_target": summary.get("epochs_to_target"),
            "monitor": summary.get("monitor"), "objective": objective.get("value"),
            "objective_name": objective.get("name"), "objective_direction": objective.get("direction"),
            "trial": summary.get("trial")}


def _to_target(group: pd.DataFrame, key: str) -> float:
    """Median over a cell's repeats, a repeat that never reached the target counted as +inf: the
    cell's value is "not reached" when most of its repeats never got there."""
    if "target" not in group or not group["target"].map(_given).any():
        return float("nan")
    values = [float(v) if reached is True or str(reached) == "True" else math.inf
              for v, reached in zip(group[key], group["target_reached"])]
    return float(pd.Series(values).median())


def _given(value: Any) -> bool:
    """A CSV/JSON cell that holds something (not None, NaN or blank)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value) != ""


def goal_cells(cell: dict[str, Any], group: pd.DataFrame) -> None:
    """The cell's target columns: medians of time and epochs to target, how many repeats got there."""
    for key in ("time_to_target_s", "epochs_to_target"):
        cell[key] = _to_target(group, key)
    targets = [t for t in group.get("target", pd.Series(dtype=object)) if _given(t)]
    cell["target"] = targets[0] if targets else None
    cell["reached"] = (f"{sum(str(r) == 'True' for r in group['target_reached'])}/{len(group)}" if targets else "")
    cell["objective"] = pd.to_numeric(group["objective"], errors="coerce").median() if "objective" in group else float("nan")
    for key in ("trial", "objective_name", "objective_direction"):  # a sweep's: hpml report ranks by them
        cell[key] = group[key].iloc[0] if key in group and _given(group[key].iloc[0]) else None


def target_speedup(table: pd.DataFrame, base: pd.Series) -> pd.Series:
    """Baseline time to target / the cell's (nan where either never got there)."""
    ttt = table["time_to_target_s"].replace(math.inf, float("nan"))
    base_ttt = base["time_to_target_s"]
    if not base_ttt or math.isinf(base_ttt) or math.isnan(base_ttt):
        return pd.Series([float("nan")] * len(table), index=table.index)
    return base_ttt / ttt


def devices(row: pd.Series) -> int:
    """Devices a run used: its processes (dp: the GPUs one process drives)."""
    if str(row.get("strategy", row.get("strategy.name", ""))) == "dp":
        import torch

        return max(torch.cuda.device_count(), 1)
    return int(row["world_size"])


def cell_medians(rows: pd.DataFrame, keys: list[str], baseline: Optional[dict[str, Any]] = None) -> pd.DataFrame:
    """Per cell (equal `keys`): medians over its repeats, speedup vs the baseline cell
    (samples/s ratio = baseline run_s / run_s for equal epochs), efficiency = speedup / devices,
    and the data share of the epoch (data_s / run_s)."""
    rows = rows.copy()
    rows["devices"] = rows.apply(devices, axis=1) if len(rows) else []
    for key in keys:
        rows[key] = rows[key].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    grouped = rows.groupby(keys, sort=False, dropna=False) if keys else [((), rows)]
    cells = []
    for values, group in grouped:
        values = values if isinstance(values, tuple) else (values,)
        cell = dict(zip(keys, values))
        cell.update({key: pd.to_numeric(group[key], errors="coerce").median() if key in group else float("nan")
                     for key in (*TIMES, *RATES, *SPLIT, "bubble_fraction", "bubble_expected", "peak_tflops",
                                 "metric_value")})
        run_s = pd.to_numeric(group["run_s"], errors="coerce")  # the spread of the repeats, not only their median
        cell.update({"run_s_min": run_s.min(), "run_s_max": run_s.max()})
        cell.update({key: pd.to_numeric(group[key], errors="coerce").median() for key in GPU_STATE if key in group})
        cell.update({key: "; ".join(dict.fromkeys(str(v) for v in group[key].dropna())) or None
                     for key in GPU_TEXT if key in group})
        cell.update({"devices": int(group["devices"].iloc[0]), "repeats": len(group), "metric": group["metric"].iloc[0]})
        goal_cells(cell, group)
        cells.append(cell)
    table = pd.DataFrame(cells)
    base = _baseline_row(table, keys, baseline)
    table["speedup"] = table["samples_per_s"] / base["samples_per_s"] if base["samples_per_s"] else float("nan")
    table["efficiency"] = table["speedup"] / (table["devices"] / base["devices"])
    table["data_share"] = table["data_s"] / table["run_s"]
    table["split"] = [split_text(row) for _, row in table.iterrows()]
    table["ttt_speedup"] = target_speedup(table, base)
    table["baseline"] = [all(str(row[k]) == str(base[k]) for k in keys) for _, row in table.iterrows()]
    return table


def _baseline_row(table: pd.DataFrame, keys: list[str], baseline: Optional[dict[str, Any]]) -> pd.Series:
    if baseline:
        match = table[[all(str(row.get(k, "")) == str(v) for k, v in baseline.items()) for _, row in table.iterrows()]]
        if len(match):
            return match.iloc[0]
    return table.iloc[0]


def split_text(row: pd.Series) -> str:
    """'71/22/0/7': compute / exposed communication / bubble / overhead in % of train_s."""
    parts = [row.get(key, float("nan")) for key in ("compute_s", "comm_exposed_s", "bubble_s", "overhead_s")]
    if any(pd.isna(p) for p in parts) or not row["train_s"] > 0:
        return "–"
    return "/".join(f"{100 * p / row['train_s']:.0f}" for p in parts)


def _fmt(value: Any, column: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value) and column in ("time_to_target_s", "epochs_to_target"):
            return "not reached"
        if column == "epochs_to_target":
            return f"{value:g}"
        if column in ("speedup", "efficiency", "data_share", "metric_value", "ttt_speedup"):
            return f"{value:.2f}" if column != "metric_value" else f"{value:.3f}"
        if column == "mfu":
            return f"{value * 100:.3g}%"
        if column in GPU_STATE or column == "comm_bytes":
            return f"{value:,.0f}"
        if column == "comm_gbps":
            return f"{value:.2f}"
        return f"{value:.1f}" if column == "samples_per_s" else f"{value:.3f}"
    return str(value)


DISPLAY = ("devices", "data_s", "train_s", "split", "run_s", "run_s_min", "run_s_max", "val_s", "samples_per_s", "tflops",
           "mfu", "mem_peak_gib", "speedup", "efficiency", "data_share", "metric_value", "repeats")


def display_columns(keys: list[str], table: Optional[pd.DataFrame] = None) -> list[str]:
    """The axes, the standard columns (the split as one text column), the bytes a step's
    communication moved and the GPU state where any cell has them, and time to target where a
    run had a target."""
    extra = [c for c in ("comm_bytes", "comm_gbps", *GPU_STATE, *GPU_TEXT) if table is not None and c in table and table[c].notna().any()]
    with_target = table is not None and "target" in table and table["target"].map(_given).any()
    return [*keys, *DISPLAY[:-1], *extra, DISPLAY[-1], *(("reached", *TARGET_DISPLAY) if with_target else ())]

def target_note(table: pd.DataFrame) -> str:
    """The line under a table with time-to-target columns ('' without a target)."""
    targets = sorted({t for t in table.get("target", pd.Series(dtype=object)) if _given(t)})
    if not targets:
        return ""
    return (f"Target {', '.join(targets)}: time_to_target_s = training + validation seconds from the first step to "
            "the first validation that met it, epochs_to_target = epochs trained by then (median over repeats, "
            "'not reached' when most repeats never got there; reached = repeats that did); ttt_speedup = the "
            "baseline's time to target / the cell's.\n")


def markdown_table(table: pd.DataFrame, columns: list[str]) -> str:
    """A GitHub markdown table of `columns` (numbers rounded for reading)."""
    header = [("final " + str(table["metric"].iloc[0])) if c == "metric_value" and len(table) else c for c in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in table.iterrows():
        mark = " **(baseline)**" if row.get("baseline") else ""
        cells = [_fmt(row[c], c) for c in columns]
        cells[1 if columns[0] == "rank" and len(columns) > 1 else 0] += mark  # the cell's first axis, not its rank
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rich_table(table: pd.DataFrame, columns: list[str], title: str) -> Table:
    out = Table(title=title)
    for column in columns:
        out.add_column(column, justify="right" if column in (*DISPLAY, *SPLIT, *GPU_STATE, *TARGET_DISPLAY, "objective", "rank") else "left")
    for _, row in table.iterrows():
        out.add_row(*[_fmt(row[c], c) + (" *" if i == 0 and row.get("baseline") else "") for i, c in enumerate(columns)])
    out.caption = ("* baseline: speedup = its samples/s ratio; efficiency = speedup / relative devices; data_share = "
                   "data_s / run_s; tflops = achieved TFLOP/s; mfu = tflops / (peak x devices), – without a known peak; "
                   "split = train_s as compute / exposed communication / bubble / overhead (%); run_s_min / _max: the "
                   "repeats' spread")
    return out
