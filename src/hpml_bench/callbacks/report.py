"""The epoch table on screen, epochs.csv and summary.json in the run folder (main rank)."""
from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from hpml_bench.callbacks.base import Callback
from hpml_bench.console import make_console
from hpml_bench.runfolder import RANK_COLUMNS, RunFolder

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
    for key in RATE_KEYS:
        values = [r[key] for r in measured if r.get(key) is not None]
        summary[f"mean_{key}"] = statistics.fmean(values) if values else None
        summary[f"median_{key}"] = statistics.median(values) if values else None
    last = history[-1]
    summary["final"] = {k: v for k, v in last.items() if k.startswith(("train_", "val_")) and k != "train_s" and k != "val_s"}
    return summary


def rank_table(history: list[dict[str, Any]], hosts: list[str] | None = None) -> pd.DataFrame:
    """One row per (epoch, rank): where each rank's time went, to spot stragglers; the rank's host."""
    import pandas as pd  # here: `import hpml_bench.train.run` stays light (pandas costs ~0.5 s)

    rows = [{"epoch": r["epoch"], "rank": rank, **dict(zip(RANK_COLUMNS, values)),
             **({"host": hosts[rank]} if hosts and rank < len(hosts) else {})}
            for r in history for rank, values in enumerate(r["ranks"])]
    return pd.DataFrame(rows)


class EpochReport(Callback):
    """Prints one line per epoch and the table at the end; keeps epochs.csv current."""

    def __init__(self, folder: RunFolder, info: dict[str, Any], console: Console | None = None):
        self.folder, self.info = folder, info
        self.console = console or make_console()

    def on_epoch_end(self, trainer, record: dict) -> None:
        metric = trainer.task.monitor
        tag = " (warm-up)" if record["warmup"] else ""
        self.console.print(
            f"epoch {record['epoch']}/{trainer.cfg.epochs}{tag}: data {record['data_s']:.2f}s  "
            f"train {record['train_s']:.2f}s  run {record['run_s']:.2f}s  val {record['val_s']:.2f}s  "
            f"{record['samples_per_s']:.1f} samples/s{rates_text(record)}  loss {record['train_loss']:.4f}  {metric} {record.get(metric, float('nan')):.4f}"
        )
        import pandas as pd

        table = pd.DataFrame(trainer.history)
        self.folder.write_text(self.folder.epochs, table.drop(columns="ranks").to_csv(index=False))
        self.folder.write_text(self.folder.ranks, rank_table(trainer.history, self.info.get("hosts")).to_csv(index=False))

    def on_fit_end(self, trainer) -> None:
        summary = {**self.info, **summarize(trainer.history)}
        self.folder.write_json(self.folder.summary, summary)
        self.console.print(epoch_table(trainer.history, trainer.task.monitor, self.info))
        self.console.print(f"run folder: {self.folder}")


def epoch_table(history: list[dict[str, Any]], metric: str, info: dict[str, Any]) -> Table:
    title = (f"{info['model']} on {info['dataset']} | strategy {info['strategy']} x{info['world_size']} | "
             f"batch {info['batch_per_rank']}/rank, {info['global_batch']} global | {info['device']}")
    table = Table(title=title)
    for column in ("epoch", "data_s", "train_s", "run_s", "val_s", "samples/s", "TFLOP/s", "MFU", "mem GiB",
                   "train_loss", metric):
        table.add_column(column, justify="right")
    for r in history:
        table.add_row(f"{r['epoch']}{'*' if r['warmup'] else ''}", f"{r['data_s']:.2f}", f"{r['train_s']:.2f}",
                      f"{r['run_s']:.2f}", f"{r['val_s']:.2f}", f"{r['samples_per_s']:.1f}", _tflops(r.get("tflops")),
                      _percent(r.get("mfu")), f"{r['mem_peak_gib']:.2f}", f"{r['train_loss']:.4f}",
                      f"{r.get(metric, float('nan')):.4f}")
    table.caption = "* warm-up epoch: left out of summary means. " + flops_caption(info)
    return table


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
