"""`hpml report <run folders | multirun folder | bench folder> [--baseline RUN] [--out DIR]`.

Gathers every run's summary.json into one table whose columns are the config keys that
differ between the runs (runs with equal configs are repeats: medians), plus speedup vs the
baseline; writes report.md, report.csv and the bench plots. This is how a Hydra sweep
(`hpml train -m ...`) is read.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from hpml_bench.bench.plots import PLOT_LINKS, write_plots
from hpml_bench.bench.results import cell_medians, display_columns, markdown_table, rich_table, run_row
from hpml_bench.callbacks.loggers import flat_config
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import CONFIG, SUMMARY, atomic_write_text
from hpml_bench.ui import make_console

# Keys that differ between any two runs without describing the experiment.
IGNORED = ("run_dir", "resume", "logger.group", "trainer.progress")


def find_runs(paths: list[Path]) -> list[Path]:
    """Run folders (those with summary.json) at or below each path, sorted, without duplicates."""
    runs: list[Path] = []
    for path in paths:
        if not path.exists():
            raise HpmlError(f"{path} does not exist; give run folders, a multirun folder or a bench folder")
        found = [path] if (path / SUMMARY).is_file() else sorted(p.parent for p in path.rglob(SUMMARY))
        runs += [r for r in found if r not in runs]
    if not runs:
        raise HpmlError(f"no finished runs (summary.json) under {', '.join(map(str, paths))}; "
                        f"give run folders of hpml train, a multirun folder or a bench folder")
    return runs


def run_config(run: Path) -> dict[str, Any]:
    if not (run / CONFIG).is_file():
        return {}
    return flat_config(OmegaConf.to_container(OmegaConf.load(run / CONFIG)))


def differing_keys(configs: list[dict[str, Any]]) -> list[str]:
    keys = list(dict.fromkeys(k for c in configs for k in c))
    return [k for k in keys if k not in IGNORED and len({str(c.get(k, "")) for c in configs}) > 1]


def report_command(args: list[str]) -> int:
    """The `hpml report` command."""
    parser = argparse.ArgumentParser(prog="hpml report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--baseline", type=Path, help="the run folder speedups are measured against (default: the first)")
    parser.add_argument("--out", type=Path, help="where report.md/.csv and plots go (default: <folder>/report or ./report)")
    try:
        opts = parser.parse_args(args)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    runs = find_runs(opts.paths)
    configs = [run_config(r) for r in runs]
    keys = differing_keys(configs)
    rows = pd.DataFrame([{"run": str(r), **{k: c.get(k, "") for k in keys}, **run_row(r)} for r, c in zip(runs, configs)])
    baseline = None
    if opts.baseline is not None:
        base_run = opts.baseline.resolve()
        matches = [c for r, c in zip(runs, configs) if r.resolve() == base_run]
        if not matches:
            raise HpmlError(f"--baseline {opts.baseline} is not one of the {len(runs)} runs found; give one of them")
        baseline = {k: matches[0].get(k, "") for k in keys}
    table = cell_medians(rows, keys, baseline)
    single = len(opts.paths) == 1 and not (opts.paths[0] / SUMMARY).is_file()
    out = opts.out or (opts.paths[0] / "report" if single else Path("report"))
    columns = display_columns(keys)
    title = f"report over {len(runs)} runs"
    atomic_write_text(out / "report.csv", rows.to_csv(index=False))
    write_plots(table, keys, out, title)
    atomic_write_text(out / "report.md", "\n".join([
        f"# {title}", "", "Columns: the config keys that differ between the runs; runs with equal configs are "
        "repeats (medians). Speedup = samples/s ratio to the baseline.", "", markdown_table(table, columns),
        PLOT_LINKS, "",
        "Runs:", *[f"- {r}" for r in runs], ""]))
    console = make_console()
    console.print(rich_table(table, columns, title))
    console.print(f"report: {out / 'report.md'}")
    return 0
