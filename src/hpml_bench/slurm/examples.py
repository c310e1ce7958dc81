"""The rendered examples in scripts/slurm/ (regenerate: python -m hpml_bench.slurm.examples scripts/slurm).

Each is `hpml slurm` output for one strategy, on a generic cluster and on Greene; they run as
they are (`sbatch scripts/slurm/ddp.sbatch model=resnet50 dataset=cifar10`)."""
from __future__ import annotations

import sys
from pathlib import Path

from hpml_bench.slurm.config import check_job, compose_slurm
from hpml_bench.slurm.render import render
from hpml_bench.train.config import compose_train, to_train_config

# name -> (train overrides, slurm overrides); the Greene form of each is greene_<name>
EXAMPLES = {
    "single": (["strategy=single"], []),
    "dp": (["strategy=dp"], ["slurm.gpus_per_node=4"]),
    "ddp": (["strategy=ddp"], ["slurm.gpus_per_node=4"]),
    "ddp_multinode": (["strategy=ddp"], ["slurm.nodes=2", "slurm.gpus_per_node=4"]),
    "ddp_torchrun": (["strategy=ddp"], ["slurm.nodes=2", "slurm.gpus_per_node=4", "slurm.launcher=torchrun",
                                       "slurm.max_restarts=1"]),
    "pipe": (["strategy=pipe"], ["slurm.gpus_per_node=2"]),
}


def rendered_examples(folder: str = "scripts/slurm") -> dict[str, str]:
    """file name -> script text, for every example in both forms."""
    out = {}
    for preset, prefix in (("cluster", ""), ("greene", "greene_")):
        for name, (train, slurm) in EXAMPLES.items():
            file = f"{prefix}{name}.sbatch"
            s = compose_slurm([f"slurm={preset}", "slurm.out_dir=.", f"slurm.job_name=hpml-{name}", *slurm])
            cfg = to_train_config(compose_train(train))
            check_job(s, cfg)
            out[file] = render(s, cfg.strategy.name, train, f"{folder}/{file}")
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "scripts/slurm")
    for file, text in rendered_examples(str(target)).items():
        (target / file).write_text(text)
        (target / file).chmod(0o755)
        print(target / file)
