"""hpml report <run folders | multirun folder | bench folder> [--baseline RUN | baseline=RUN] [--out DIR | out=DIR]

One table (markdown + CSV) and plots over run folders: the config keys that differ between the
runs are the columns, runs with equal configs are repeats (medians), speedups are against the
baseline. This is how a Hydra sweep (`hpml train -m ...`) is read."""
from __future__ import annotations

import argparse
from pathlib import Path

from hpml_bench.bench.report import write_hta, write_report
from hpml_bench.config.words import is_override, key_of, value_of
from hpml_bench.errors import HpmlError

_KEYS = ("baseline", "out")  # also as key=value words, read as every command reads them


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """One line, as every command's mistakes are (argparse prints its usage above it)."""
        raise HpmlError(f"hpml report: {message} (usage: hpml report RUN_OR_FOLDER... [baseline=RUN] [out=DIR] "
                        "[--hta]; hpml report --help)")


def report_command(args: list[str]) -> int:
    """The `hpml report` command."""
    parser = _Parser(prog="hpml report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--baseline", type=Path, help="the run folder speedups are measured against (default: the first)")
    parser.add_argument("--out", type=Path, help="where report.md/.csv and plots go (default: <folder>/report or ./report)")
    parser.add_argument("--hta", action="store_true",
                        help="Holistic Trace Analysis's view of the runs' profiler=torch traces beside hpml's step "
                             "split of the same steps (hta.csv)")
    words = [a for a in args if is_override(a) and key_of(a).removeprefix("report.") in _KEYS]
    args = [a for a in args if a not in words]
    for key in _KEYS:
        value = value_of([w.removeprefix("report.") for w in words], key)
        args += [f"--{key}", str(value)] if value is not None else []
    try:
        opts = parser.parse_args(args)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if opts.hta:
        write_hta(opts.paths, opts.out)
        return 0
    write_report(opts.paths, opts.baseline, opts.out)
    return 0
