"""hpml bench bench=<name | file.yaml> [bench.scale=full|smoke] [bench.repeats=N] [bench.out_dir=DIR] [train overrides ...]

Runs every cell of the bench matrix as its own `hpml train`, then writes bench.csv, results.md
and plots; with bench.launcher=slurm every cell is a SLURM job (slurm=<preset>, slurm.key=value)."""
from __future__ import annotations

from hpml_bench.bench.config import is_slurm_key, load_bench
from hpml_bench.bench.runner import run_bench
from hpml_bench.config.words import hydra_words, key_of


def _is_slurm_arg(arg: str) -> bool:
    key = key_of(arg)
    return key == "slurm" or is_slurm_key(key)


def bench_command(args: list[str]) -> int:
    """The `hpml bench` command; exit 0 when every runnable cell finished, 1 when one failed."""
    args = hydra_words(args)
    slurm_args = [a for a in args if _is_slurm_arg(a)]
    bench, train_args = load_bench([a for a in args if a not in slurm_args])
    return run_bench(bench, train_args, slurm_args)
