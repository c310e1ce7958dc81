"""`hpml bench bench=<name> [bench.x=y] [train overrides]`: run a matrix of `hpml train`s.

Each cell runs as its own `hpml train` process (clean memory, nothing leaks between cells)
in its own run folder under one bench folder; repeats alternate the cell order (ABBA).
Cells this machine cannot run are skipped with the reason; a failing cell is recorded and
the others go on; a cell whose run folder already holds a summary is not run again.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import torch
from omegaconf import OmegaConf

from hpml_bench.bench.cells import Cell, abba_order, cell_row, cuda_needs, error_line, needs_text, values_text
from hpml_bench.bench.config import (
    BenchConfig,
    axis_keys,
    baseline_index,
    cell_overrides,
    expand_cells,
    is_group_key,
    is_slurm_key,
)
from hpml_bench.bench.curves import CURVE_LINK, write_metric_vs_time
from hpml_bench.bench.plots import PLOT_LINKS, write_plots
from hpml_bench.bench.results import (
    cell_medians,
    display_columns,
    markdown_table,
    rich_table,
    target_note,
)
from hpml_bench.bench.slurm_cells import SlurmLauncher
from hpml_bench.config.search_path import config_dir_args
from hpml_bench.console import make_console
from hpml_bench.errors import HpmlError
from hpml_bench.registry import unknown_choice
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.writes import atomic_write_text
from hpml_bench.strategies import STRATEGIES
from hpml_bench.train.config import compose_train, to_train_config


def machine_refusal(cfg) -> Optional[str]:
    """Why this machine cannot run the cell (None if it can): CUDA-only settings, too few GPUs."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nproc = getattr(cfg.strategy, "nproc_per_node", 1)
    wanted = cuda_needs(cfg)
    if wanted and (gpus == 0 or cfg.device == "cpu"):
        return f"{needs_text(wanted)}; no GPU here"
    if cfg.strategy.name == "dp" and gpus < 2:
        return f"strategy=dp needs 2 or more GPUs; {gpus} here"
    if gpus and cfg.device != "cpu" and nproc > gpus:
        return f"needs {nproc} GPUs; {gpus} here"
    return None


def local_check(cfg, values: Optional[dict[str, Any]] = None) -> Optional[str]:
    """Why this machine cannot run the cell (None: it can); a strategy's refusal raises HpmlError.
    (`values`, the cell's axis values, matter to the SLURM launcher's check only.)"""

    refusal = machine_refusal(cfg)
    if refusal is None:
        STRATEGIES.get(cfg.strategy.name).preflight(cfg, getattr(cfg.strategy, "nproc_per_node", 1))
    return refusal


def plan(bench: BenchConfig, train_args: list[str],
         check: Callable[[Any, dict[str, Any]], Optional[str]] = local_check) -> tuple[list[Cell], list[str]]:
    """Every cell with its overrides, and those that cannot run marked (skipped / failed) with why.
    `check(train config, axis values)` says why a cell cannot run where its launcher runs it."""

    form = bench.form
    values = expand_cells(form)
    keys = axis_keys(values)
    shared = [*form.base, *train_args, f"logger.group={bench.name}", "trainer.progress=never"]
    # slurm.* axes are the job's resources (launcher=slurm), not train keys
    cells = [Cell(v, [*shared, *cell_overrides({k: x for k, x in v.items() if not is_slurm_key(k)})]) for v in values]
    present: dict[str, bool] = {k: False for k in keys if not is_group_key(k) and not is_slurm_key(k)}
    for cell in cells:  # keys first, with the cell's group choices, so a typo reads as such
        groups = [*shared, *cell_overrides({k: v for k, v in cell.values.items() if is_group_key(k)})]
        try:
            base = compose_train(groups)
        except HpmlError as exc:
            cell.status, cell.reason = "failed", str(exc)
            continue
        missing = [k for k in cell.values if k in present and OmegaConf.select(base, k, default="\0") == "\0"]
        for key in present:
            present[key] |= key not in missing
        if missing:
            cell.status, cell.reason = "skipped", f"its config has no key {', '.join(missing)}"
    for key, found in present.items():
        if not found:
            raise HpmlError(f"bench axis '{key}' is not a key of the train config; `hpml train --cfg job` lists every key")
    for cell in cells:
        if cell.status != "ready":
            continue
        try:
            cfg = to_train_config(compose_train(cell.overrides))
            refusal = check(cfg, cell.values)
            if refusal:
                cell.status, cell.reason = "skipped", refusal
        except HpmlError as exc:
            cell.status, cell.reason = "failed", str(exc)
    return cells, keys


def run_cell(cell: Cell, rep_dir: Path, log: Path, env: dict[str, str]) -> tuple[str, str, float]:
    """One `hpml train` process: (status, error line, wall seconds). A finished folder is reused."""
    if RunFolder(rep_dir).finished:
        return "done", "", 0.0
    args = [f"run_dir={rep_dir}"]
    if RunFolder(rep_dir).resumable:  # an interrupted cell: continue it from its checkpoint
        args = [f"resume={rep_dir}"]
    # --config-dir: the user's config folder, absolute (the cell composes what the plan composed)
    command = [sys.executable, "-m", "hpml_bench", "train", *config_dir_args(), *cell.overrides, *args]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    wall = time.perf_counter() - start
    atomic_write_text(log, f"$ {' '.join(command)}\n\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    if proc.returncode == 0 and RunFolder(rep_dir).finished:
        return "done", "", wall
    return "failed", f"exit code {proc.returncode}: {error_line(proc.stderr)}", wall


class LocalLauncher:
    """Every cell a process on this machine, one after the other."""

    check = staticmethod(local_check)

    def preflight(self, bench: BenchConfig, slurm_args: list[str]) -> None:
        if slurm_args or any(is_slurm_key(k) for k in axis_keys(expand_cells(bench.form))):
            raise HpmlError("slurm=/slurm.* settings need bench.launcher=slurm (each cell a SLURM job); add it")

    def run(self, bench: BenchConfig, cells: list[Cell], folder: Path, console) -> bool:
        run_local(bench, cells, folder, console)
        return True


# bench.launcher -> the launcher
LAUNCHERS: dict[str, Callable[[], Any]] = {"local": LocalLauncher, "slurm": SlurmLauncher}


def run_local(bench: BenchConfig, cells: list[Cell], folder: Path, console) -> None:
    """Run the ready cells here in ABBA order; each repeat's row goes to cell.rows."""
    order = abba_order(cells, bench.repeats or bench.form.repeats)
    for n, (cell, r) in enumerate(order, 1):
        rep_dir = folder / "cells" / cell.id / f"rep{r}"
        with console.status(f"[{n}/{len(order)}] {cell.id} (repeat {r + 1}) running ..."):
            status, error, wall = run_cell(cell, rep_dir, folder / "logs" / f"{cell.id}__rep{r}.log",
                                            {k: str(v) for k, v in bench.form.env.items()})
        row = cell_row(cell, r, n, status, error, rep_dir, folder, wall)
        if status == "done":
            note = "finished earlier, reused" if wall == 0 else f"{wall:.1f} s"
            console.print(f"[{n}/{len(order)}] [green]done[/] {cell.id} rep {r + 1}: {row['samples_per_s']:.1f} samples/s, "
                          f"run_s {row['run_s']:.2f} ({note})")
        else:
            console.print(f"[{n}/{len(order)}] [red]failed[/] {cell.id} rep {r + 1}: {error}")
        cell.rows.append(row)


def write_results(bench: BenchConfig, cells: list[Cell], keys: list[str], folder: Path, console) -> bool:
    """bench.csv, results.md, the plots; prints the table. Returns whether any cell failed."""
    rows = [row for cell in cells for row in cell.rows]
    rows += [{"cell": c.id, "repeat": None, "status": c.status, "reason": c.reason, **values_text(c.values)}
             for c in cells if c.status != "ready"]
    tidy = pd.DataFrame(rows)
    atomic_write_text(folder / "bench.csv", tidy.to_csv(index=False))
    done = tidy[tidy["status"] == "done"] if len(tidy) else tidy
    title = f"{bench.name} ({bench.scale})"
    lines = [f"# bench {bench.name} ({bench.scale})", "", bench.description.strip(), ""]
    if len(done):
        base = cells[baseline_index([c.values for c in cells], bench.form.baseline)].values
        table = cell_medians(done, keys, base)
        columns = display_columns(keys, table)
        lines += ["Medians over repeats of each run's median over its measured (non-warm-up) epochs.", "",
                  markdown_table(table, columns), target_note(table)]
        write_plots(table, keys, folder, title)
        curves = write_metric_vs_time(done, keys, lambda row: folder / row["run_dir"], folder, title)
        lines += [PLOT_LINKS + (f" {CURVE_LINK}" if curves else ""), ""]
        console.print(rich_table(table, columns, title))
    not_run = [c for c in cells if c.status != "ready" or any(r["status"] == "failed" for r in c.rows)]
    if not_run:
        lines += ["## Not run", ""] + [f"- `{c.id}`: {c.status if c.status != 'ready' else 'failed'}: "
                                       f"{c.reason or next(r['reason'] for r in c.rows if r['status'] == 'failed')}" for c in not_run]
    atomic_write_text(folder / "results.md", "\n".join(lines) + "\n")
    return any(c.status == "failed" or any(r["status"] == "failed" for r in c.rows) for c in cells)


def run_bench(bench: BenchConfig, train_args: list[str], slurm_args: list[str]) -> int:
    """Plan, run (or submit) and gather a bench; 0 when every runnable cell finished, 1 when
    one failed. `slurm_args`: slurm=/slurm.* words, for bench.launcher=slurm."""
    if bench.launcher not in LAUNCHERS:
        raise unknown_choice("bench.launcher", bench.launcher, LAUNCHERS)
    launcher = LAUNCHERS[bench.launcher]()
    launcher.preflight(bench, slurm_args)
    cells, keys = plan(bench, train_args, launcher.check)
    folder = Path(bench.folder).resolve()
    repeats = bench.repeats or bench.form.repeats
    console = make_console()
    console.print(f"[bold]bench {bench.name}[/] ({bench.scale}): {len(cells)} cells x {repeats} repeats -> {folder}")
    if bench.scale == "full" and bench.needs:
        console.print(f"needs: {bench.needs}")
    for cell in cells:
        if cell.status != "ready":
            console.print(f"  [yellow]{cell.status}[/] {cell.id}: {cell.reason}")
    start = time.perf_counter()
    if not launcher.run(bench, cells, folder, console):  # bench.wait=false: jobs still queued
        return 0
    failed = write_results(bench, cells, keys, folder, console)
    console.print(f"bench folder: {folder}  ({time.perf_counter() - start:.0f} s)")
    return 1 if failed else 0
