"""One table over finished runs (`hpml report`, cli/report.py): gathers every run's summary.json into one table whose columns are the config keys that
differ between the runs (runs with equal configs are repeats: medians), plus speedup vs the
baseline; writes report.md, report.csv and the bench plots. This is how a Hydra sweep
(`hpml train -m ...`) is read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pandas as pd
from omegaconf import OmegaConf
from rich.table import Table

from hpml_bench.bench.curves import CURVE_LINK, write_metric_vs_time
from hpml_bench.bench.plots import PLOT_LINKS, write_plots
from hpml_bench.bench.ranking import failed_trials_lines, rank_trials
from hpml_bench.bench.results import (
    cell_medians,
    display_columns,
    markdown_table,
    rich_table,
    run_row,
    target_note,
)
from hpml_bench.callbacks.loggers import flat_config
from hpml_bench.console import make_console
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.writes import atomic_write_text

# Keys that differ between any two runs without describing the experiment.
IGNORED = ("run_dir", "resume", "logger.group", "trainer.progress")


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders (those with summary.json) at or below each path, sorted, without duplicates."""
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise HpmlError(f"{path} does not exist; give run folders, a multirun folder or a bench folder")
        found = [r.path for r in RunFolder(path).runs_below()]
        runs += [r for r in found if r not in runs]
    if not runs:
        raise HpmlError(f"no finished runs (summary.json) under {', '.join(map(str, paths))}; "
                        f"give run folders of hpml train, a multirun folder or a bench folder")
    return runs


def run_config(run: Path) -> dict[str, Any]:
    config = RunFolder(run).config
    if not config.is_file():
        return {}
    return flat_config(OmegaConf.to_container(OmegaConf.load(config)))


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if k not in IGNORED and len({str(c.get(k, "")) for c in configs}) > 1]


def write_hta(paths: list[Path], out: Optional[Path] = None) -> Path:
    """`hpml report --hta`: per run with profiler traces, per rank, hpml's split of the profiled
    steps beside Holistic Trace Analysis's view of them (bench/hta.py); prints it, writes hta.csv."""
    from hpml_bench.bench.hta import HPML_COLUMNS, HTA_COLUMNS, hta_view  # pandas + HTA: only for --hta

    runs = [r for r in find_runs(paths) if RunFolder(r).traces.is_dir()]
    if not runs:
        raise HpmlError(f"no run under {', '.join(map(str, paths))} has profiler traces; train with profiler=torch")
    views = [hta_view(run) for run in runs]
    table = pd.concat([v[0] for v in views], ignore_index=True)
    out = out or (paths[0] / "report" if len(paths) == 1 and not RunFolder(paths[0]).finished else Path("report"))
    atomic_write_text(out / "hta.csv", table.to_csv(index=False))
    console = make_console()
    shown = Table(title="hpml's step split vs Holistic Trace Analysis, the profiled steps (seconds)")
    columns = ["run", "rank", *[c for c in (*HPML_COLUMNS, *HTA_COLUMNS) if c in table]]
    for column in columns:
        shown.add_column(column, justify="right")
    for _, row in table.iterrows():
        shown.add_row(*[_cell(row.get(c)) for c in columns])
    console.print(shown)
    for line in (line for view in views for line in view[1]):
        console.print(line)
    console.print(f"hta: {out / 'hta.csv'}")
    return out / "hta.csv"


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(paths: list[Path], baseline_run: Optional[Path] = None, out: Optional[Path] = None) -> Path:
    """report.md, report.csv and the plots over the runs found at `paths`; prints the table.
    Speedups are against `baseline_run` (default: the first); `out` defaults to
    <folder>/report for one folder of runs, else ./report. Returns report.md's path."""
    runs = find_runs(paths)
    configs = [run_config(r) for r in runs]
    keys = differing_keys(configs)
    rows = pd.DataFrame([{"run": str(r), **{k: c.get(k, "") for k in keys}, **run_row(r)} for r, c in zip(runs, configs)])
    baseline = None
    if baseline_run is not None:
        base_run = baseline_run.resolve()
        matches = [c for r, c in zip(runs, configs) if r.resolve() == base_run]
        if not matches:
            raise HpmlError(f"--baseline {baseline_run} is not one of the {len(runs)} runs found; give one of them")
        baseline = {k: matches[0].get(k, "") for k in keys}
    table = cell_medians(rows, keys, baseline)
    single = len(paths) == 1 and not RunFolder(paths[0]).finished
    out = out or (paths[0] / "report" if single else Path("report"))
    columns = display_columns(keys, table)
    table, columns, ranked = rank_trials(table, columns)  # a sweep's trials, best objective first
    title = f"report over {len(runs)} {'trials' if ranked else 'runs'}"
    atomic_write_text(out / "report.csv", rows.to_csv(index=False))
    write_plots(table, keys, out, title)
    curves = write_metric_vs_time(rows, keys, lambda row: Path(row["run"]), out, title)
    atomic_write_text(out / "report.md", "\n".join([
        f"# {title}", "", "Columns: the config keys that differ between the runs; runs with equal configs are "
        "repeats (medians). Speedup = samples/s ratio to the baseline.", "", markdown_table(table, columns),
        target_note(table), ranked, PLOT_LINKS + (f" {CURVE_LINK}" if curves else ""), "",
        *failed_trials_lines(paths), "Runs:", *[f"- {r}" for r in runs], ""]))
    console = make_console()
    console.print(rich_table(table, columns, title))
    console.print(f"report: {out / 'report.md'}")
    return out / "report.md"
