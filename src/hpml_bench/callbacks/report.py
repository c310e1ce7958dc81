"""The epoch table on screen, epochs.csv and summary.json in the run folder (main rank)."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from hpml_bench.callbacks.base import Callback
from hpml_bench.ui import make_console
from hpml_bench.runfolder import EPOCHS, RANKS, SUMMARY, atomic_write_json, atomic_write_text

TIME_KEYS = ("data_s", "train_s", "run_s", "val_s", "samples_per_s", "mem_peak_gib")


def summarize(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over the non-warm-up epochs (all epochs if every one was warm-up), last scores."""
    measured = [r for r in history if not r["warmup"]] or history
    summary: dict[str, Any] = {"epochs": len(history), "measured_epochs": [r["epoch"] for r in measured],
                               "warmup_excluded": len(measured) < len(history)}
    for key in TIME_KEYS:
        summary[f"mean_{key}"] = statistics.fmean(r[key] for r in measured)
        summary[f"median_{key}"] = statistics.median(r[key] for r in measured)
    last = history[-1]
    summary["final"] = {k: v for k, v in last.items() if k.startswith(("train_", "val_")) and k != "train_s" and k != "val_s"}
    return summary


def rank_table(history: list[dict[str, Any]], hosts: list[str] | None = None) -> pd.DataFrame:
    """One row per (epoch, rank): where each rank's time went, to spot stragglers; the rank's host."""
    from hpml_bench.trainer import RANK_COLUMNS

    rows = [{"epoch": r["epoch"], "rank": rank, **dict(zip(RANK_COLUMNS, values)),
             **({"host": hosts[rank]} if hosts and rank < len(hosts) else {})}
            for r in history for rank, values in enumerate(r["ranks"])]
    return pd.DataFrame(rows)


class EpochReport(Callback):
    """Prints one line per epoch and the table at the end; keeps epochs.csv current."""

    def __init__(self, run_dir: Path, info: dict[str, Any], console: Console | None = None):
        self.run_dir, self.info = run_dir, info
        self.console = console or make_console()

    def on_epoch_end(self, trainer, record: dict) -> None:
        metric = trainer.task.monitor
        tag = " (warm-up)" if record["warmup"] else ""
        self.console.print(
            f"epoch {record['epoch']}/{trainer.cfg.epochs}{tag}: data {record['data_s']:.2f}s  "
            f"train {record['train_s']:.2f}s  run {record['run_s']:.2f}s  val {record['val_s']:.2f}s  "
            f"{record['samples_per_s']:.1f} samples/s  loss {record['train_loss']:.4f}  {metric} {record.get(metric, float('nan')):.4f}"
        )
        table = pd.DataFrame(trainer.history)
        atomic_write_text(self.run_dir / EPOCHS, table.drop(columns="ranks").to_csv(index=False))
        atomic_write_text(self.run_dir / RANKS, rank_table(trainer.history, self.info.get("hosts")).to_csv(index=False))

    def on_fit_end(self, trainer) -> None:
        summary = {**self.info, **summarize(trainer.history)}
        atomic_write_json(self.run_dir / SUMMARY, summary)
        self.console.print(epoch_table(trainer.history, trainer.task.monitor, self.info))
        self.console.print(f"run folder: {self.run_dir}")


def epoch_table(history: list[dict[str, Any]], metric: str, info: dict[str, Any]) -> Table:
    title = (f"{info['model']} on {info['dataset']} | strategy {info['strategy']} x{info['world_size']} | "
             f"batch {info['batch_per_rank']}/rank, {info['global_batch']} global | {info['device']}")
    table = Table(title=title)
    for column in ("epoch", "data_s", "train_s", "run_s", "val_s", "samples/s", "mem GiB", "train_loss", metric):
        table.add_column(column, justify="right")
    for r in history:
        table.add_row(f"{r['epoch']}{'*' if r['warmup'] else ''}", f"{r['data_s']:.2f}", f"{r['train_s']:.2f}",
                      f"{r['run_s']:.2f}", f"{r['val_s']:.2f}", f"{r['samples_per_s']:.1f}", f"{r['mem_peak_gib']:.2f}",
                      f"{r['train_loss']:.4f}", f"{r.get(metric, float('nan')):.4f}")
    table.caption = "* warm-up epoch: left out of summary means"
    return table
