"""`hpml slurm <train overrides> slurm=<preset> [slurm.key=value ...]`: check, render, submit."""
from __future__ import annotations

import datetime
from pathlib import Path

from omegaconf import OmegaConf

from hpml_bench.config.words import hydra_words, key_of
from hpml_bench.runfolder.writes import atomic_write_text
from hpml_bench.slurm.config import check_job, compose_slurm
from hpml_bench.slurm.render import render
from hpml_bench.slurm.submit import submit
from hpml_bench.train.config import compose_train, to_train_config

HELP = """\
hpml slurm <hpml train overrides> [slurm=<preset>] [slurm.key=value ...] [slurm.submit=true]
renders an sbatch script for the train command (printed as the last line); submit=true runs sbatch.
presets: conf/slurm/*.yaml (local: the scripts/slurm/local-cluster.sh cluster; cluster; greene).
The slurm config of this command line:

"""


def _is_slurm_arg(arg: str) -> bool:
    key = key_of(arg)
    return key == "slurm" or key.startswith("slurm.")


def slurm_command(args: list[str]) -> int:
    """Render (and with slurm.submit=true submit) the sbatch script for `hpml train args`."""
    args = hydra_words(args)
    slurm_args = [a for a in args if _is_slurm_arg(a)]
    train_args = [a for a in args if not _is_slurm_arg(a) and a not in ("--help", "-h")]
    s = compose_slurm(slurm_args)
    if len(train_args) < len(args) - len(slurm_args):  # --help: the composed slurm config
        print(HELP + OmegaConf.to_yaml(OmegaConf.structured(s)))
        return 0
    cfg = to_train_config(compose_train(train_args))  # the train command must be valid now, not on the node
    check_job(s, cfg)
    script = Path(s.script or Path(s.out_dir) / f"{s.job_name}-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}.sbatch")
    Path(s.out_dir).mkdir(parents=True, exist_ok=True)  # SLURM cannot open its log in a missing folder
    atomic_write_text(script, render(s, cfg.strategy.name, train_args, str(script)))
    script.chmod(0o755)
    print(script)
    if s.submit:
        print(submit(script))
    return 0
