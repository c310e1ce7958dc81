"""The bench and report plot of a validation metric against wall time, one colour per cell
(each repeat a line): which cell reached a given score first. Read from each run's
validations.csv (every validation, mid-epoch ones included, with its elapsed training +
validation seconds)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

import matplotlib

matplotlib.use("Agg")  # files only, no display (CI, clusters)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hpml_bench.bench.plots import cell_label  # noqa: E402
from hpml_bench.runfolder import RunFolder  # noqa: E402

CURVE_PLOT = "metric_vs_time.png"
CURVE_LINK = f"![validation metric against wall time]({CURVE_PLOT})"


def parse_target(text: object) -> Optional[tuple[str, str, float]]:
    """'val_acc>=0.94' -> ('val_acc', '>=', 0.94); None for anything else."""
    match = re.fullmatch(r"(\w+)(>=|<=)([-+0-9.eE]+)", str(text))
    return (match[1], match[2], float(match[3])) if match else None


def _metric(rows: pd.DataFrame) -> tuple[Optional[str], Optional[float]]:
    """The target's metric and value if the runs had one, else the monitored metric."""
    for text in rows.get("target", pd.Series(dtype=object)):
        target = parse_target(text)
        if target:
            return target[0], target[2]
    monitors = [m for m in rows.get("monitor", pd.Series(dtype=object)) if isinstance(m, str) and m]
    return (monitors[0] if monitors else None), None


def write_metric_vs_time(rows: pd.DataFrame, keys: list[str], run_path: Callable[[pd.Series], Path], folder: Path,
                         title: str) -> Optional[Path]:
    """metric_vs_time.png in `folder` for the finished runs in `rows` (run_path(row) is a row's run
    folder); None when no run logged validations (runs from before validations.csv)."""
    metric, target = _metric(rows)
    if metric is None:
        return None
    rows = rows.copy()
    for key in keys:  # a cell without this axis: blank, as in the tables (not "nan" in the legend)
        rows[key] = rows[key].map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn = False
    groups = rows.groupby(keys, sort=False, dropna=False) if keys else [((), rows)]
    for n, (_, group) in enumerate(groups):
        colour, label = colours[n % len(colours)], cell_label(group.iloc[0], keys)
        for i, (_, row) in enumerate(group.iterrows()):
            path = RunFolder(run_path(row)).validations
            if not path.is_file():
                continue
            curve = pd.read_csv(path)
            if metric not in curve or curve[metric].isna().all():
                continue
            curve = curve.dropna(subset=[metric])
            ax.plot(curve["elapsed_s"], curve[metric], marker=".", color=colour, alpha=0.85, linewidth=1.2,
                    label=label if i == 0 else None)
            reached = row.get("time_to_target_s")
            if target is not None and pd.notna(reached) and reached is not None:
                ax.plot([float(reached)], [float(curve.loc[curve["elapsed_s"] <= float(reached) + 1e-9, metric].iloc[-1])],
                        marker="o", markersize=8, markerfacecolor="none", color=colour)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    if target is not None:
        ax.axhline(target, color="k", linestyle="--", linewidth=1, label=f"target {metric} = {target:g}")
    ax.set_xlabel("wall time: training + validation since the first step (s)")
    ax.set_ylabel(f"{metric} (every validation)")
    ax.set_title(f"{title}: {metric} against time" + (" (circle: target reached)" if target is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = folder / CURVE_PLOT
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out
