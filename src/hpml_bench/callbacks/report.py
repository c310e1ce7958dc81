"""The epoch table on screen, epochs.csv and summary.json in the run folder (main rank)."""
from __future__ import annotations

import statistics
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from hpml_bench.callbacks.base import Callback
from hpml_bench.callbacks.hardware import hardware_text
from hpml_bench.callbacks.split_view import SPLIT_HEADER, split_caption, split_cell
from hpml_bench.callbacks.stragglers import find_stragglers
from hpml_bench.console import make_console
from hpml_bench.runfolder import RANK_COLUMNS, SPLIT_COLUMNS, RunFolder

if TYPE_CHECKING:  # pandas is imported where a table is written: `import hpml_bench.train.run` stays light
    import pandas as pd

TIME_KEYS = ("data_s", "train_s", "run_s", "val_s", "samples_per_s", "mem_peak_gib")
# Achieved TFLOP/s and MFU: None where FLOPs were not counted or no peak is known (CPU).
RATE_KEYS = ("tflops", "mfu")


def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the non-warm-up epochs (all epochs if every one was warm-up), last scores."""
    measured = [r for r in history if not r["warmup"]] or history
    summary: dict[str, Any] = {"epochs": len(history), "measured_epochs": [r["epoch"] for r in measured],
                               "warmup_excluded": len(measured) < len(history)}
    for key in TIME_KEYS:
        summary[f"mean_{key}"] = statistics.fmean(r[key] for r in measured)
        summary[f"median_{key}"] = statistics.median(r[key] for r in measured)
    for key in (*RATE_KEYS, *[k for k in SPLIT_COLUMNS if k in history[-1]]):
        values = [r[key] for r in measured if r.get(key) is not None]
        summary[f"mean_{key}"] = statistics.fmean(values) if values else None
        summary[f"median_{key}"] = statistics.median(values) if values else None
    if "bubble_s" in history[-1]:  # the share of the strategy's step a stage idled (the slowest rank's)
        summary["bubble_fraction"] = statistics.median(bubble_share(r) for r in measured)
    last = history[-1]
    summary["final"] = {k: v for k, v in last.items() if k.startswith(("train_", "val_")) and k != "train_s" and k != "val_s"}
    return summary


def bubble_share(record: dict[str, Any]) -> float:
    """bubble_s over the strategy's step time (train_s without the loop's overhead): the share
    a pipeline's analytic (p - 1) / (m + p - 1) predicts."""
    step_s = record["train_s"] - record.get("overhead_s", 0.0)
    return record["bubble_s"] / step_s if step_s > 0 else 0.0


def run_summary(trainer) -> dict[str, Any]:
    """summarize() plus the run's goals: target, time_to_target_s, epochs_to_target, early stop,
    the monitored metric's best value and the sweep objective (train/targets.py)."""
    return {**summarize(trainer.history), **trainer.goals.summary()}


def goals_text(summary: dict[str, Any]) -> str:
    """The table's footer line on the target and early stopping ('' with neither)."""
    parts = []
    if summary.get("target"):
        if summary["target_reached"]:
            epochs = summary["epochs_to_target"]
            parts.append(f"time to target {summary['target']}: {summary['time_to_target_s']:.2f} s "
                         f"(training + validation), {epochs} epoch{'' if epochs == 1 else 's'}")
        else:
            best = summary.get("target_best")
            parts.append(f"target {summary['target']}: not reached in {summary['epochs']} epoch{'' if summary['epochs'] == 1 else 's'}"
                         + (f" (best {best:.4g})" if best is not None else ""))
    if summary.get("stop_reason") == "target":
        parts.append("stopped at the target (trainer.stop_at_target)")
    elif summary.get("stop_reason") == "early_stop":
        early = summary["early_stop"]
        parts.append(f"stopped early: {early['monitor']} did not improve by more than {early['min_delta']:g} "
                     f"in {early['patience']} validations (best {early['best']:.4g})")
    return "; ".join(parts)


def rank_table(history: list[dict[str, Any]], hosts: list[str] | None = None, threshold: float = 0.25) -> pd.DataFrame:
    """One row per (epoch, rank): where each rank's time went and whether it straggled
    (stragglers.py); the rank's host."""
    import pandas as pd  # here: `import hpml_bench.train.run` stays light (pandas costs ~0.5 s)

    rows = []
    for r in history:
        slow = find_stragglers(r, hosts, threshold)
        rows += [{"epoch": r["epoch"], "rank": rank, **dict(zip(RANK_COLUMNS, values)), "straggler": rank in slow,
                  **({"host": hosts[rank]} if hosts and rank < len(hosts) else {}),
                  **(r["gpu_ranks"][rank] if rank < len(r.get("gpu_ranks", [])) else {})}  # GPU runs: its GPUs' state
                 for rank, values in enumerate(r["ranks"])]
    return pd.DataFrame(rows)


class EpochReport(Callback):
    """Prints one line per epoch and the table at the end; keeps epochs.csv current."""

    def __init__(self, folder: RunFolder, info: dict[str, Any], console: Console | None = None):
        self.folder, self.info = folder, info
        self.console = console or make_console()
        self.named: set[int] = set()  # stragglers already named (one line each per run)

    def on_epoch_end(self, trainer, record: dict) -> None:
        metric = trainer.goals.monitor
        tag = " (warm-up)" if record["warmup"] else ""
        self.console.print(
            f"epoch {record['epoch']}/{trainer.cfg.epochs}{tag}: data {record['data_s']:.2f}s  "
            f"train {record['train_s']:.2f}s  run {record['run_s']:.2f}s  val {record['val_s']:.2f}s  "
            f"{record['samples_per_s']:.1f} samples/s{rates_text(record)}  loss {record['train_loss']:.4f}  {metric} {record.get(metric, float('nan')):.4f}"
            + ema_text(record, metric) + hardware_text(record)
        )
        import pandas as pd

        table = pd.DataFrame(trainer.history)
        threshold = trainer.cfg.straggler_threshold
        self.folder.write_text(self.folder.epochs, table.drop(columns=["ranks", "gpu_ranks"], errors="ignore").to_csv(index=False))
        self.folder.write_text(self.folder.ranks, rank_table(trainer.history, self.info.get("hosts"), threshold).to_csv(index=False))
        found = find_stragglers(record, self.info.get("hosts"), threshold)
        for line in dict.fromkeys(found.values()):  # a host's ranks share one line
            ranks = {rank for rank, text in found.items() if text == line}
            if not ranks <= self.named:
                print(f"hpml: {line}", file=sys.stderr, flush=True)
            self.named |= ranks
        self.folder.write_text(self.folder.validations, pd.DataFrame(trainer.goals.validations).to_csv(index=False))

    def on_fit_end(self, trainer) -> None:
        summary = {**self.info, **run_summary(trainer)}
        self.folder.write_json(self.folder.summary, summary)
        self.console.print(epoch_table(trainer.history, trainer.goals.monitor, self.info, goals_text(summary)))
        self.console.print(f"run folder: {self.folder}")


def epoch_table(history: list[dict[str, Any]], metric: str, info: dict[str, Any], footer: str = "") -> Table:
    title = (f"{info['model']} on {info['dataset']} | strategy {info['strategy']} x{info['world_size']} | "
             f"batch {info['batch_per_rank']}/rank, {info['global_batch']} global | {info['device']}")
    table = Table(title=title)
    split = "compute_s" in history[-1]
    for column in ("epoch", "data_s", "train_s", *([SPLIT_HEADER] if split else []), "run_s", "val_s", "samples/s",
                   "TFLOP/s", "MFU", "mem GiB", "train_loss", metric):
        table.add_column(column, justify="right")
    for r in history:
        table.add_row(f"{r['epoch']}{'*' if r['warmup'] else ''}", f"{r['data_s']:.2f}", f"{r['train_s']:.2f}",
                      *([split_cell(r)] if split else []),
                      f"{r['run_s']:.2f}", f"{r['val_s']:.2f}", f"{r['samples_per_s']:.1f}", _tflops(r.get("tflops")),
                      _percent(r.get("mfu")), f"{r['mem_peak_gib']:.2f}", f"{r['train_loss']:.4f}",
                      f"{r.get(metric, float('nan')):.4f}")
    caption = split_caption(summarize(history), info) if split else None
    table.caption = ((f"{footer}\n" if footer else "") + "* warm-up epoch: left out of summary means. " + flops_caption(info)
                     + (f"\n{caption}" if caption else ""))
    return table


def ema_text(record: dict, metric: str) -> str:
    """'  val_ema_acc 0.9512' where the run keeps an EMA of its weights (trainer.ema_decay)."""
    key = metric.replace("val_", "val_ema_", 1)
    return f"  {key} {record[key]:.4f}" if key in record else ""


def _tflops(value) -> str:
    return "-" if value is None else (f"{value:.2f}" if value >= 0.1 else f"{value:.4f}")


def _percent(value) -> str:
    return "-" if value is None else f"{value * 100:.3g}%"


def rates_text(record: dict) -> str:
    """'  0.42 TFLOP/s  MFU 31.0%' (MFU only where a peak is known)."""
    if record.get("tflops") is None:
        return ""
    mfu = f"  MFU {_percent(record['mfu'])}" if record.get("mfu") is not None else ""
    return f"  {_tflops(record['tflops'])} TFLOP/s{mfu}"


def flops_caption(info: dict[str, Any]) -> str:
    """Where TFLOP/s and MFU come from, in one line under the table."""
    flops = info.get("flops_per_sample")
    if not flops:
        return info.get("flops_note", "FLOPs not counted")
    peak = info.get("peak_tflops")
    peak_text = (f"MFU = TFLOP/s / ({peak:g} TFLOP/s peak x {info.get('devices', 1)} devices; {info['peak_source']})"
                 if peak else f"no MFU: {info.get('peak_source', 'no peak known')}")
    counted = info.get("flops_counted_on", "meta")
    where = ("counted on the meta device" if counted == "meta"
             else f"counted on {counted}: the meta device cannot run the model")
    return f"{flops / 1e9:.3f} GFLOP per training sample (forward + backward, {where}); {peak_text}"
