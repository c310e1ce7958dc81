"""Submitting a rendered sbatch script."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hpml_bench.errors import HpmlError


def submit(script: Path, env: dict[str, str] | None = None) -> str:
    """`sbatch --parsable script` (the job inherits `env`, default this one); returns the job id."""
    if shutil.which("sbatch") is None:
        raise HpmlError("slurm.submit=true but sbatch is not on PATH; run on a login node "
                        "(or start scripts/slurm/local-cluster.sh up)")
    done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, env=env or os.environ)
    if done.returncode != 0:
        raise HpmlError(f"sbatch refused {script}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return done.stdout.strip().split(";")[0]
