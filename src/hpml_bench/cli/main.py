"""`hpml <command> [arguments]`: pops the command and dispatches to its module in cli/."""
from __future__ import annotations

import importlib
import sys

from hpml_bench.cli.version import package_version
from hpml_bench.config.search_path import pinned_config_dir
from hpml_bench.errors import HpmlError, report_error
from hpml_bench.registry import unknown_choice
from hpml_bench.runfolder.writes import is_write_failure, write_error

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

def run() -> None:
    """The `hpml` console script and `python -m hpml_bench`: main(), then the process's exit."""
    try:
        code = main()
    except SystemExit as exc:  # a stop's exit code (train/run.py)
        code = exit_status(exc)
    # Only a process that made a process group needs the careful exit; a module not imported
    # means none was made (and `hpml list` stays free of torch.distributed).
    distributed = sys.modules.get("hpml_bench.strategies.distributed")
    if distributed is not None and distributed.started_a_group():
        distributed.exit_without_finalizing(code)
    sys.exit(code)


def exit_status(exc: SystemExit) -> int:
    """The exit status sys.exit gives: None is 0, a message is printed and is 1."""
    if exc.code is None or isinstance(exc.code, int):
        return int(exc.code or 0)
    print(exc.code, file=sys.stderr)
    return 1


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

        if not is_write_failure(exc):
            raise
        return report_error(write_error(getattr(exc, "filename", None) or "a file", exc))


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
    "train": "hpml_bench.cli.train:train_command",
    "prepare": "hpml_bench.cli.prepare:prepare_command",
    "list": "hpml_bench.cli.listing:list_command",
    "slurm": "hpml_bench.cli.slurm:slurm_command",
    "cam": "hpml_bench.cli.cam:cam_command",
    "bench": "hpml_bench.cli.bench:bench_command",
    "report": "hpml_bench.cli.report:report_command",
    "export": "hpml_bench.cli.export:export_command",
    "predict": "hpml_bench.cli.predict:predict_command",
    "init": "hpml_bench.cli.init_project:init_command",
    "eval": "hpml_bench.cli.eval:eval_command",
    "version": "hpml_bench.cli.version:version_command",
}


def _command_function(command: str):
    module, _, function = COMMANDS[command].partition(":")
    return getattr(importlib.import_module(module), function)


if __name__ == "__main__":
    sys.exit(main())
