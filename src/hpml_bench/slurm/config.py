"""The `slurm` config (presets in conf/slurm/) and the checks made before rendering."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional
from unittest import mock

import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hpml_bench.config.search_path import HPML_CONF, find_config, group_choices
from hpml_bench.config.words import as_config, key_of, value_of
from hpml_bench.errors import HpmlError
from hpml_bench.faults.preemption import signal_number
from hpml_bench.registry import unknown_choice
from hpml_bench.strategies import STRATEGIES

PRESETS = HPML_CONF / "slurm"  # hpml's own; a user's conf/slurm/<name>.yaml is found first
CONTAINERS = ("none", "greene")
LAUNCHERS = ("srun", "torchrun")
MULTI_PROCESS = ("ddp", "fsdp", "pipe")
# SLURM's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
_TIME = re.compile(r"^(\d+-\d{1,2}(:\d{1,2}){0,2}|\d+(:\d{1,2}){0,2})$")


@dataclass
class SlurmConfig:
    name: str = "local"  # the preset (set by the slurm=<choice> file)
    job_name: str = "hpml"  # #SBATCH --job-name
    nodes: int = 1  # #SBATCH --nodes
    gpus_per_node: int = 0  # #SBATCH --gres=gpu:N (0: CPU tasks)
    tasks_per_node: Optional[int] = None  # null: one per GPU for ddp/fsdp/pipe, else 1
    cpus_per_task: int = 1  # #SBATCH --cpus-per-task (at least dataset.num_workers + 1)
    mem: str = "4G"  # per node
    time: str = "01:00:00"  # #SBATCH --time (HH:MM:SS or D-HH:MM:SS)
    partition: Optional[str] = None  # #SBATCH --partition; null: the cluster's default
    account: Optional[str] = None  # #SBATCH --account; null: none
    qos: Optional[str] = None  # #SBATCH --qos; null: none
    # The signal SLURM sends signal_lead_s before the time limit: checkpoint and requeue.
    signal: str = "USR1"
    signal_lead_s: int = 120  # seconds before the time limit that `signal` is sent
    container: str = "none"  # none | greene (singularity exec --nv --overlay ... .sif)
    overlay: str = "/scratch/$USER/overlay-25GB-500K.ext3"  # container=greene: the overlay image with the Python env
    image: str = "/scratch/work/public/singularity/cuda12.1.1-cudnn8.9.0-devel-ubuntu22.04.2.sif"  # container=greene: the Singularity image
    env_script: str = "/ext3/env.sh"  # container=greene: sourced inside the container before hpml runs
    command: Optional[str] = None  # how a task starts hpml; null: this Python (`<python> -m hpml_bench`)
    out_dir: str = "runs/slurm"  # the rendered script and SLURM's log (%x-%j.out)
    script: Optional[str] = None  # where to write the script; null: <out_dir>/<job_name>-<time>.sbatch
    # srun: srun starts one task per GPU (every task is a rank); torchrun: srun starts one torchrun
    # per node and it starts the node's workers (ddp/fsdp/pipe; restarts with max_restarts)
    launcher: str = "srun"
    # torchrun only: how often the workers are restarted (from the last checkpoint) after a failure
    max_restarts: int = 0
    extra: list[str] = field(default_factory=list)  # more `#SBATCH` options, e.g. ["--constraint=a100"]
    submit: bool = False  # run sbatch on the rendered script and print the job id


def compose_slurm(overrides: list[str]) -> SlurmConfig:
    """`slurm=<preset>` then `slurm.key=value` overrides over the SlurmConfig schema."""
    preset = str(value_of(overrides, "slurm", "local"))
    names = group_choices("slurm")
    if preset not in names:
        raise unknown_choice("slurm", preset, names)
    given = as_config([o for o in overrides if key_of(o).startswith("slurm.")], prefix="slurm.")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(SlurmConfig), OmegaConf.load(find_config("slurm", preset)),
                                 given)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise HpmlError(f"slurm config: {str(exc).splitlines()[0]}") from exc


def tasks_per_node(s: SlurmConfig, strategy: str) -> int:
    if s.tasks_per_node is not None:
        return s.tasks_per_node
    return max(1, s.gpus_per_node) if strategy in ("ddp", "fsdp", "pipe") else 1


def check_job(s: SlurmConfig, cfg) -> None:
    """Refuse, in one line each, a job that would fail or hang on the cluster."""
    strategy = cfg.strategy.name
    tasks = tasks_per_node(s, strategy)
    if s.container not in CONTAINERS:
        raise HpmlError(f"slurm.container={s.container}: use one of {', '.join(CONTAINERS)}")
    if s.launcher not in LAUNCHERS:
        raise HpmlError(f"slurm.launcher={s.launcher}: use one of {', '.join(LAUNCHERS)}")
    if s.launcher == "torchrun" and strategy not in MULTI_PROCESS:
        raise HpmlError(f"slurm.launcher=torchrun starts worker processes; strategy={strategy} runs one process: "
                        f"use slurm.launcher=srun (or strategy=ddp)")
    if s.launcher == "srun" and s.max_restarts:
        raise HpmlError("slurm.max_restarts restarts torchrun's workers; set slurm.launcher=torchrun (or drop it)")
    if not _TIME.match(s.time):
        raise HpmlError(f"slurm.time={s.time}: use HH:MM:SS, MM, D-HH or D-HH:MM:SS")
    if s.nodes < 1 or tasks < 1 or s.gpus_per_node < 0:
        raise HpmlError("slurm.nodes and slurm.tasks_per_node must be positive, slurm.gpus_per_node 0 or more")
    if strategy in MULTI_PROCESS and s.gpus_per_node > 0 and tasks != s.gpus_per_node:
        raise HpmlError(f"slurm.tasks_per_node={tasks} but slurm.gpus_per_node={s.gpus_per_node}: strategy={strategy} "
                        f"runs one task per GPU; set them equal")
    if s.cpus_per_task < cfg.dataset.num_workers + 1:
        raise HpmlError(f"slurm.cpus_per_task={s.cpus_per_task} is below dataset.num_workers+1={cfg.dataset.num_workers + 1} "
                        f"(the loader workers plus the training process); raise slurm.cpus_per_task")
    if strategy == "dp" and s.nodes > 1:
        raise HpmlError("strategy=dp (DataParallel) runs on one node; use strategy=ddp for slurm.nodes>1")
    if strategy in ("single", "dp") and tasks > 1:
        raise HpmlError(f"strategy={strategy} runs one process; drop slurm.tasks_per_node or use strategy=ddp")
    if strategy == "single" and s.nodes > 1:
        raise HpmlError("strategy=single runs on one node; use strategy=ddp for slurm.nodes>1")
    if getattr(cfg.strategy, "nproc_per_node", 1) > 1:
        raise HpmlError("under SLURM, srun starts one task per GPU: drop strategy.nproc_per_node, set slurm.gpus_per_node")

    signal_number(s.signal)
    _preflight_as_on_node(cfg, s.nodes * tasks, s.gpus_per_node)


def _preflight_as_on_node(cfg, world_size: int, gpus: int) -> None:
    """The strategy's own checks, as a compute node with `gpus` GPUs will see them (the
    login node rendering the script usually has none)."""

    with mock.patch.object(torch.cuda, "is_available", return_value=gpus > 0), \
            mock.patch.object(torch.cuda, "device_count", return_value=gpus):
        STRATEGIES.get(cfg.strategy.name).preflight(cfg, world_size)
