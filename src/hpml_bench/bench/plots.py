"""The bench and report plots (matplotlib, PNG): throughput vs devices with ideal scaling,
stacked epoch time per cell (data / compute / exposed communication / bubble / overhead, with the
repeats' spread), speedup bars, MFU per cell (achieved TFLOP/s where no peak is known)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display (CI, clusters)
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

# Axes that set the device count: the throughput plot's x axis, not a series of its own.
DEVICE_KEYS = ("strategy.nproc_per_node",)
PLOTS = ("throughput_vs_devices.png", "epoch_time.png", "speedup.png", "mfu.png")
# The markdown line results.md and report.md show the plots with.
PLOT_LINKS = "![throughput](throughput_vs_devices.png) ![epoch time](epoch_time.png) ![speedup](speedup.png) ![MFU](mfu.png)"


def cell_label(row: pd.Series, keys: list[str]) -> str:
    parts = [f"{k.split('.')[-1]}={row[k]}" for k in keys if str(row[k]) != ""]
    return ", ".join(parts) or "base"


def write_plots(table: pd.DataFrame, keys: list[str], folder: Path, title: str) -> list[Path]:
    """The three PNGs in `folder`; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = [cell_label(row, keys) for _, row in table.iterrows()]
    paths = [folder / name for name in PLOTS]
    _throughput(table, keys, paths[0], title)
    _epoch_time(table, labels, paths[1], title)
    _speedup(table, labels, paths[2], title)
    _mfu(table, labels, paths[3], title)
    return paths


def _throughput(table: pd.DataFrame, keys: list[str], path: Path, title: str) -> None:
    series_keys = [k for k in keys if k not in DEVICE_KEYS]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = table.groupby(series_keys, sort=False) if series_keys else [((), table)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        group = group.sort_values("devices")
        label = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(series_keys, values) if str(v) != "") or "runs"
        ax.plot(group["devices"], group["samples_per_s"], marker="o", label=label)
    base = table[table["baseline"]].iloc[0] if table["baseline"].any() else table.iloc[0]
    most = max(int(table["devices"].max()), int(base["devices"]))
    xs = list(range(int(base["devices"]), most + 1))
    ax.plot(xs, [base["samples_per_s"] * x / base["devices"] for x in xs], "k--", linewidth=1, label="ideal scaling (baseline x devices)")
    ax.set_xlabel("devices (processes; GPUs on a GPU node)")
    ax.set_ylabel("throughput (samples/s, median of measured epochs)")
    ax.set_xticks(sorted(set(int(d) for d in table["devices"]) | set(xs)))
    ax.set_title(f"{title}: throughput vs devices")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


# Where a step's time went, left to right: the stacked bar's parts (label, colour).
EPOCH_PARTS = (("data_s", "data wait", "#e4572e"), ("compute_s", "compute", "#29335c"),
               ("comm_exposed_s", "exposed communication", "#f3a712"), ("bubble_s", "pipeline bubble", "#a8c686"),
               ("overhead_s", "overhead (the rest of run_s)", "#8d99ae"))


def epoch_parts(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell, run_s as data + compute + exposed communication + bubble + overhead (the loop's
    own, and whatever else run_s holds); without a measured split, train_s counts as compute."""
    col = lambda key: pd.to_numeric(table[key], errors="coerce") if key in table else pd.Series(float("nan"), table.index)  # noqa: E731
    parts = pd.DataFrame({"data_s": col("data_s"), "compute_s": col("compute_s").fillna(col("train_s")),
                          "comm_exposed_s": col("comm_exposed_s").fillna(0), "bubble_s": col("bubble_s").fillna(0)})
    parts["overhead_s"] = (col("run_s") - parts.sum(axis=1)).clip(lower=0)
    return parts


def _epoch_time(table: pd.DataFrame, labels: list[str], path: Path, title: str) -> None:
    parts = epoch_parts(table)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.8))
    y = list(range(len(table)))
    left = pd.Series(0.0, index=table.index)
    for key, label, color in EPOCH_PARTS:
        ax.barh(y, parts[key], left=left, label=label, color=color)
        left = left + parts[key]
    if "run_s_min" in table:  # the repeats' spread: min to max of run_s, the median at the bar's end
        median = pd.to_numeric(table["run_s"], errors="coerce")
        low, high = (median - table["run_s_min"]).clip(lower=0), (table["run_s_max"] - median).clip(lower=0)
        ax.errorbar(median, y, xerr=[low, high], fmt="none", ecolor="k", capsize=3, linewidth=1,
                    label="run_s over repeats (min-max)")
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("epoch time (s, median of measured epochs)")
    ax.set_title(f"{title}: where the epoch time went")
    ax.legend(fontsize=7, loc="best")
    _save(fig, path)


def _speedup(table: pd.DataFrame, labels: list[str], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.8))
    y = range(len(table))
    colors = ["#888888" if b else "#2e86ab" for b in table["baseline"]]
    ax.barh(y, table["speedup"], color=colors)
    for i, value in enumerate(table["speedup"]):
        ax.text(value, i, f" {value:.2f}x", va="center", fontsize=8)
    ax.axvline(1.0, color="k", linewidth=1)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speedup vs baseline (x, samples/s ratio; grey = baseline)")
    ax.set_title(f"{title}: speedup")
    _save(fig, path)


def _mfu(table: pd.DataFrame, labels: list[str], path: Path, title: str) -> None:
    """MFU (%) per cell; where no cell has a peak (CPU, an unknown GPU), achieved TFLOP/s."""
    mfu = pd.to_numeric(table.get("mfu", pd.Series([float("nan")] * len(table))), errors="coerce")
    use_mfu = mfu.notna().any()
    values = (mfu * 100) if use_mfu else pd.to_numeric(table.get("tflops", pd.Series([float("nan")] * len(table))),
                                                        errors="coerce")
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.8))
    y = range(len(table))
    ax.barh(y, values.fillna(0), color="#6a4c93")
    for i, value in enumerate(values):
        text = "not counted" if pd.isna(value) else (f" {value:.1f}%" if use_mfu else f" {value:.3g}")
        ax.text(0 if pd.isna(value) else value, i, text, va="center", fontsize=8)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MFU (% of the devices' peak dense TFLOP/s)" if use_mfu
                  else "achieved TFLOP/s (no MFU: no peak known; set trainer.peak_tflops)")
    ax.set_title(f"{title}: {'model FLOPs utilisation' if use_mfu else 'achieved TFLOP/s'}")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
