"""hpml report <run folders | multirun folder | bench folder> [--baseline RUN] [--out DIR]

One table (markdown + CSV) and plots over run folders: the config keys that differ between the
runs are the columns, runs with equal configs are repeats (medians), speedups are against the
baseline. This is how a Hydra sweep (`hpml train -m ...`) is read."""
from __future__ import annotations

import argparse
from pathlib import Path

from hpml_bench.bench.report import write_hta, write_report


def report_command(args: list[str]) -> int:
    """The `hpml report` command."""
    parser = argparse.ArgumentParser(prog="hpml report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--baseline", type=Path, help="the run folder speedups are measured against (default: the first)")
    parser.add_argument("--out", type=Path, help="where report.md/.csv and plots go (default: <folder>/report or ./report)")
    parser.add_argument("--hta", action="store_true",
                        help="Holistic Trace Analysis's view of the runs' profiler=torch traces beside hpml's step "
                             "split of the same steps (hta.csv)")
    try:
        opts = parser.parse_args(args)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if opts.hta:
        write_hta(opts.paths, opts.out)
        return 0
    write_report(opts.paths, opts.baseline, opts.out)
    return 0
