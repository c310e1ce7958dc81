"""`hpml train [overrides]`: check the config and the run folder in one line each, launch the
workers for strategy.nproc_per_node, then hand the rest to the Hydra app (so -m, --cfg and
--help work as in Hydra). `resume=<run>` re-applies the overrides that started the run."""
from __future__ import annotations

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from hpml_bench.cli.sweep import failed_trial, trial_objective, with_optuna_direction
from hpml_bench.config.groups import CHOICE_GROUPS, CONF_DIR, check_group_choices
from hpml_bench.config.words import hydra_words, key_of, value_of, word
from hpml_bench.errors import HpmlError, WriteError, report_error
from hpml_bench.faults.preemption import restarted
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.provenance import recorded_file, use_run_config_dir
from hpml_bench.runfolder.writes import is_write_failure, shown, write_error
from hpml_bench.strategies import STRATEGIES, world_size_to_be
from hpml_bench.strategies.dist_env import read_dist_env
from hpml_bench.strategies.launch import launch_workers, launched_by_hpml_or_torchrun
from hpml_bench.train.config import compose_train, names_its_run_dir, to_train_config

_HYDRA_FLAGS = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i",
                "--resolve", "--package", "-p", "--shell-completion", "-sc", "--run", "-r")


def train_command(args: list[str]) -> int:
    """The `hpml train` command; returns the exit code."""
    if "--help" in args or "-h" in args:
        # here: it composes every group, which only --help needs
        from hpml_bench.cli.train_help import train_help

        print(train_help([a for a in args if a not in ("--help", "-h")]))
        return 0
    args = with_resumed_overrides(with_restart_resume(hydra_words(args)))
    check_group_choices(args)  # also under --cfg / -m, where Hydra's own message is long or late
    if "-m" in args or "--multirun" in args:
        args = with_optuna_direction(args)  # the sweeper optimizes the way the trials' objective goes
    if not any(a.split("=")[0] in _HYDRA_FLAGS for a in args):
        # Check the config and the run folder before Hydra makes a folder and starts,
        # so mistakes read as one line and leave nothing behind.
        dcfg = compose_train(args)
        cfg = to_train_config(dcfg)
        if cfg.resume is None and not names_its_run_dir(dcfg):  # a folder of its own, made now
            made = RunFolder.new()
            cfg.run_dir = str(made)
            args = [*args, word("run_dir", cfg.run_dir)]
            try:
                return _checked_start(cfg, args)
            finally:  # a refused start leaves no empty folder; a run that started owns it
                made.remove_if_empty()
        return _checked_start(cfg, args)
    return run_hydra(args)


def _checked_start(cfg, args: list[str]) -> int:
    """The run folder's and the strategy's checks, then the workers or the Hydra app."""
    folder = RunFolder(cfg.resume or cfg.run_dir)
    if read_dist_env().world_size == 1:  # a live run there: say who
        # In a job of several processes rank 0 takes the lock once the group is up, and
        # every rank stops with its line (train/run.py): a rank 0 leaving here would leave
        # srun's other tasks waiting for it until strategy.timeout_s.
        folder.check_not_held()
    checkpoint = RunFolder(cfg.run_dir).check_start(cfg.resume)
    if checkpoint is not None:
        # here: only a resume reads a checkpoint (its shapes, against a meta-device model)
        from hpml_bench.train.resume import check_resumable

        check_resumable(cfg, folder, checkpoint)  # another model: one line before any worker starts
    folder.check_writable(create=False)  # before Hydra starts or data loads
    nproc = getattr(cfg.strategy, "nproc_per_node", 1)
    STRATEGIES.get(cfg.strategy.name).preflight(cfg, world_size_to_be(nproc))
    if nproc > 1 and not launched_by_hpml_or_torchrun():  # every worker must write the same run folder
        return launch_workers(nproc, [*args, word("run_dir", str(folder))])
    return run_hydra(args)


# hpml's conf/ (the repository's top level, or the wheel's hpml_bench/conf); the user's folder
# goes before it through the hydra_plugins/hpml_config_dir search-path plugin.
@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="train")
def _train(cfg: DictConfig) -> float:
    """One run; returns its objective (trainer.objective), which a sweeper such as Optuna's reads."""
    # Imported here: `hpml train --cfg job` and -m's planning never need the training stack.
    from hpml_bench.train.run import run_training

    hc = HydraConfig.get()
    folder = RunFolder(hc.runtime.output_dir)
    try:
        run_training(cfg, folder, list(hc.overrides.task), OmegaConf.to_container(hc.runtime.choices))
    except Exception as exc:
        if hc.mode == RunMode.MULTIRUN:  # a trial of a sweep: a bad score, and the sweep goes on
            return failed_trial(exc, folder, hc)
        if not isinstance(exc, HpmlError) and not is_write_failure(exc):
            raise
        error = exc if isinstance(exc, HpmlError) else write_error(getattr(exc, "filename", None) or folder, exc)
        if isinstance(error, WriteError):  # stopped cleanly: say how to go on
            resume = f"resume with: hpml train resume={shown(folder.path)}" if folder.resumable else "run again"
            error = WriteError(f"{error}, then {resume}")
        folder.remove_if_empty()  # Hydra made it for this run; a failed start leaves no empty folder
        sys.exit(report_error(error))
    return trial_objective(folder, hc)


def run_hydra(overrides: list[str]) -> int:
    """Run the Hydra app with these command-line overrides."""
    saved = sys.argv
    sys.argv = ["hpml train", *overrides]
    try:
        _train()
    except SystemExit as exc:  # a failed run inside Hydra: keep its exit code
        return exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = saved
    return 0


def with_resumed_overrides(args: list[str]) -> list[str]:
    """The saved overrides of the resumed run, minus those given again now, then `args`.

    So `hpml train resume=runs/X trainer.epochs=8` continues run X's model and data set
    without the user repeating them.
    """
    resume = value_of(args, "resume")
    folder = RunFolder(resume) if resume else None
    if folder is None or not folder.overrides.is_file():
        return args
    use_run_config_dir(folder)  # the user's config folder it was started with
    given = {key_of(a) for a in args}
    saved = _carried(folder, [str(o) for o in OmegaConf.load(folder.overrides) if key_of(str(o)) not in given], args)
    code = recorded_file(folder)  # model=custom: import the file it trained with, from any folder
    if code is not None and "model.path" not in given:
        saved.append(word("model.path", str(code)))
    return saved + args


def _carried(folder: RunFolder, saved: list[str], args: list[str]) -> list[str]:
    """The saved overrides that still apply: after `strategy=single` (the run had ddp), the run's
    `strategy.nproc_per_node=2` is kept only if the new choice has that key (fsdp does, single
    does not). One line names what is left behind."""
    chosen = {g: value_of(args, g) for g in CHOICE_GROUPS if value_of(args, g) is not None}
    before = [str(o) for o in OmegaConf.load(folder.overrides)]
    changed = [g for g, v in chosen.items() if value_of(before, g) != v]
    candidates = [o for o in saved if key_of(o).split(".")[0] in changed and not o.startswith("+")]
    if not candidates:
        return saved
    kept = [o for o in saved if o not in candidates]
    try:
        composed = compose_train(kept + args)
        keep = [o for o in candidates if OmegaConf.select(composed, key_of(o), default=_ABSENT) is not _ABSENT]
    except HpmlError:  # the command has another mistake: its own line comes when it is composed
        keep = []
    left = [o for o in candidates if o not in keep]
    if left and read_dist_env().rank == 0:
        now = ", ".join(f"{g}={chosen[g]}" for g in changed)
        print(f"hpml: resume={folder} with {now}: not carried over from the run: {' '.join(left)}",
              file=sys.stderr, flush=True)
    return [o for o in saved if o not in left]


_ABSENT = object()


def with_restart_resume(args: list[str]) -> list[str]:
    """A requeued SLURM job or a torchrun restart continues its own run folder by itself.

    Only when the restart count says so and a checkpoint is there: a first start never
    picks up an old folder. The folder is `run_dir=` if given, else runs/$HPML_RUN_ID.
    """
    env = os.environ
    if not restarted() or any(key_of(a) == "resume" for a in args):
        return args
    run_dir = value_of(args, "run_dir")
    if run_dir is None and env.get("HPML_RUN_ID"):
        run_dir = f"runs/{env['HPML_RUN_ID']}"
    if run_dir is None or not RunFolder(run_dir).resumable:
        return args
    return [*args, word("resume", run_dir)]
