"""`resume=<run folder>`: re-apply the overrides that started the run, then today's."""
from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from hpml_bench.runfolder import LAST, OVERRIDES


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def with_resumed_overrides(args: list[str]) -> list[str]:
    """The saved overrides of the resumed run, minus those given again now, then `args`.

    So `hpml train resume=runs/X trainer.epochs=8` continues run X's model and data set
    without the user repeating them.
    """
    resume = next((a.split("=", 1)[1] for a in args if _key(a) == "resume"), None)
    saved_file = Path(resume) / OVERRIDES if resume else None
    if saved_file is None or not saved_file.is_file():
        return args
    from hpml_bench.config_dirs import use_run_config_dir

    use_run_config_dir(Path(resume))  # the user's config folder it was started with
    given = {_key(a) for a in args}
    saved = [str(o) for o in OmegaConf.load(saved_file) if _key(str(o)) not in given]
    return saved + args


def with_restart_resume(args: list[str]) -> list[str]:
    """A requeued SLURM job or a torchrun restart continues its own run folder by itself.

    Only when the restart count says so and a checkpoint is there: a first start never
    picks up an old folder. The folder is `run_dir=` if given, else runs/$HPML_RUN_ID.
    """
    import os

    from hpml_bench.preempt import restarted

    env = os.environ
    if not restarted() or any(_key(a) == "resume" for a in args):
        return args
    run_dir = next((a.split("=", 1)[1] for a in args if _key(a) == "run_dir"), None)
    if run_dir is None and env.get("HPML_RUN_ID"):
        run_dir = f"runs/{env['HPML_RUN_ID']}"
    if run_dir is None or not (Path(run_dir) / LAST).is_file():
        return args
    return [*args, f"resume={run_dir}"]
