"""`hpml <command> [overrides]`: pops the command and hands the rest to Hydra."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from hpml_bench.errors import HpmlError, report_error
from hpml_bench.registry import unknown_choice

USAGE = """\
usage: hpml <command> [overrides...]

commands:
  train   train a model and print the per-epoch time table (data / train / run / val)
          e.g. hpml train model=resnet50 dataset=cifar10 trainer.epochs=5
  prepare decode and resize an on-disk data set once into a cache (then dataset.cache=true)
          e.g. hpml prepare dataset=lgg_mri dataset.root=~/data/lgg-mri-segmentation
  slurm   render an sbatch script for a train command (slurm=local|greene|cluster); slurm.submit=true submits
          e.g. hpml slurm strategy=ddp model=resnet50 slurm=greene slurm.nodes=2 slurm.gpus_per_node=4
  cam     Grad-CAM heat maps of a trained run on images, into <run>/cam/ (--gif: a folder of frames)
          e.g. hpml cam run=runs/<folder> images=photo.png method=gradcam++ target=circle
  bench   run a bench matrix (conf/bench/): one `hpml train` per cell, table, speedups, plots
          e.g. hpml bench bench=iformer_strategies bench.scale=smoke
  report  one table (markdown + CSV) and plots over run folders, a multirun folder or a bench folder
          e.g. hpml report runs/multirun/2026-11-24_10-00-00 --baseline runs/multirun/2026-11-24_10-00-00/0
  list    list registered choices: hpml list models|datasets|strategies|optimizers|schedulers|loggers|profilers|benches|experiments|slurm
          (hpml list models --source torchvision|timm [--filter '*convnext*'] lists outside architectures)
  init    write a starter project (conf/ with your model, data set, experiment, bench; mynet.py): hpml init [DIR]
  export  write a checked deployment artifact from a run: hpml export run=runs/<id> format=torchscript|aoti|exported|onnx|int8
  predict classify (or segment) image files with a run's model: hpml predict run=runs/<id> images=<file|folder> [format=aoti]
  eval    score a run (or an exported artifact) on a split, into <run>/eval/ (JSON, markdown, confusion PNG)
          e.g. hpml eval run=runs/<id> split=test format=int8   (dataset.root=<folder>: another folder)
  version hpml, Python, torch, CUDA and the optional extras installed (paste it into a bug report)

`hpml --version` prints hpml's version alone.

`hpml train --help` lists the config groups and every key with its default.
Your own configs: ./conf/<group>/<name>.yaml (or --config-dir DIR, or $HPML_CONFIG_DIR) is searched
before hpml's own, e.g. conf/model/mynet.yaml -> model=mynet.
Errors print one line and exit with code 2; HPML_DEBUG=1 shows the traceback."""

_HYDRA_FLAGS = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i",
                "--resolve", "--package", "-p", "--shell-completion", "-sc", "--run", "-r")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hpml` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("--version", "-V"):
        print(f"hpml {package_version()}")
        return 0
    if argv[0] in _SHORT_HELP and ("--help" in argv[1:] or "-h" in argv[1:]):
        print(_SHORT_HELP[argv[0]])
        return 0
    from hpml_bench.config_dirs import pinned_config_dir

    try:
        # `--config-dir DIR` anywhere on the line: the user's config folder, pinned for every
        # process the command starts (workers, bench cells, SLURM tasks)
        with pinned_config_dir(argv) as argv:
            if not argv:
                print(USAGE)
                return 0
            command, rest = argv[0], argv[1:]
            if command not in COMMANDS:
                raise unknown_choice("command", command, COMMANDS)
            return _command_function(command)(rest) or 0
    except HpmlError as exc:
        return report_error(exc)
    except Exception as exc:  # a full disk, a read-only or forbidden folder: one line, exit 4
        from hpml_bench.runfolder import is_write_failure, write_error

        if not is_write_failure(exc):
            raise
        return report_error(write_error(getattr(exc, "filename", None) or "a file", exc))


def train_command(args: list[str]) -> int:
    from hpml_bench.config import check_group_choices, compose_train, to_train_config
    from hpml_bench.resume import with_restart_resume, with_resumed_overrides
    from hpml_bench.runfolder import check_run_folder, check_writable
    from hpml_bench.runlock import check_not_held
    from hpml_bench.strategies.dist_env import read_dist_env

    if "--help" in args or "-h" in args:
        from hpml_bench.help import train_help

        print(train_help([a for a in args if a not in ("--help", "-h")]))
        return 0
    args = with_resumed_overrides(with_restart_resume(args))
    check_group_choices(args)  # also under --cfg / -m, where Hydra's own message is long or late
    if not any(a.split("=")[0] in _HYDRA_FLAGS for a in args):
        # Check the config and the run folder before Hydra makes a folder and starts,
        # so mistakes read as one line and leave nothing behind.
        cfg = to_train_config(compose_train(args))
        if read_dist_env().world_size == 1:  # a live run there: say who
            # In a job of several processes rank 0 takes the lock once the group is up, and
            # every rank stops with its line (run.py): a rank 0 leaving here would leave
            # srun's other tasks waiting for it until strategy.timeout_s.
            check_not_held(Path(cfg.resume or cfg.run_dir))
        check_run_folder(Path(cfg.resume or cfg.run_dir), cfg.resume)
        check_writable(Path(cfg.resume or cfg.run_dir), create=False)  # before Hydra starts or data loads
        nproc = getattr(cfg.strategy, "nproc_per_node", 1)
        from hpml_bench.strategies import STRATEGIES, world_size_to_be

        STRATEGIES.get(cfg.strategy.name).preflight(cfg, world_size_to_be(nproc))
        if nproc > 1:
            from hpml_bench.strategies.launch import launch_workers, launched_by_hpml_or_torchrun

            if not launched_by_hpml_or_torchrun():  # every worker must write the same run folder
                return launch_workers(nproc, [*args, f"run_dir={cfg.resume or cfg.run_dir}"])
    from hpml_bench import hydra_app

    return hydra_app.run(args)


def prepare_command(args: list[str]) -> int:
    from hpml_bench.data.prepare import prepare_from_overrides

    return prepare_from_overrides(args)


def list_command(args: list[str]) -> int:
    from hpml_bench.listing import print_listing

    what = args[0] if args else "models"
    print_listing(what, args[1:])  # hpml list models --source timm --filter '*convnext*'
    return 0


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hpml-bench")
    except PackageNotFoundError:  # run from a source tree that was never pip-installed
        return "unknown (not installed)"


def version_command(args: list[str]) -> int:
    from hpml_bench.versions import environment_report

    print(environment_report(package_version()))
    return 0


# --help of the commands that take only overrides or a name (the others print their own).
_SHORT_HELP = {
    "prepare": "hpml prepare dataset=<on-disk data set> dataset.root=<folder> [task=classification|segmentation] "
               "[dataset.key=value ...]\ndecodes and resizes the images once into a uint8 cache "
               "(<root>/.hpml-cache, or dataset.cache_dir); train from it with dataset.cache=true.",
    "list": "hpml list models|datasets|strategies|optimizers|schedulers|loggers|profilers|benches|experiments|slurm\n"
            "prints the choices of a group, yours from ./conf marked (models: task, input size, accepted sizes, "
            "parameters);\nhpml list models --source torchvision|timm [--filter '*convnext*'] lists outside architectures.",
    "bench": "hpml bench bench=<name | file.yaml> [bench.scale=full|smoke] [bench.repeats=N] [bench.out_dir=DIR] "
             "[train overrides ...]\nruns every cell of the bench matrix as its own `hpml train`, then writes "
             "bench.csv, results.md and plots; see `hpml list benches`.",
    "version": "hpml version\nprints hpml, Python, torch, CUDA and the optional extras installed.",
}

# Each command is its own module, imported only when run (so `hpml list` stays fast):
# name -> "module:function", the function taking the remaining arguments and returning the exit code.
COMMANDS = {
    "train": "hpml_bench.cli:train_command",
    "prepare": "hpml_bench.cli:prepare_command",
    "list": "hpml_bench.cli:list_command",
    "slurm": "hpml_bench.slurm.command:slurm_command",
    "cam": "hpml_bench.cam:cam_command",
    "bench": "hpml_bench.bench.runner:bench_command",
    "report": "hpml_bench.bench.report:report_command",
    "export": "hpml_bench.deploy.export:export_command",
    "predict": "hpml_bench.deploy.predict:predict_command",
    "init": "hpml_bench.init_project:init_command",
    "eval": "hpml_bench.eval.command:eval_command",
    "version": "hpml_bench.cli:version_command",
}


def _command_function(command: str):
    module, _, function = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), function)


if __name__ == "__main__":
    sys.exit(main())
