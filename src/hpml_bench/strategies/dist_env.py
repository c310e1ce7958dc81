"""Where this process sits in a distributed job: torchrun's variables, or SLURM's."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    master_addr: str | None = None  # None: a single process with no launcher
    master_port: int = 29500
    source: str = "single"  # torchrun | slurm | single


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gr[003-005,010],gv001' -> 'gr003'."""
    head = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if head is None:
        raise ValueError(f"cannot read SLURM node list {nodelist!r}")
    prefix, _, ranges = head.groups()
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def read_dist_env(environ: dict | None = None) -> DistEnv:
    """torchrun (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT) first; then a task started
    by `srun` (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, first host of SLURM_JOB_NODELIST)."""
    env = os.environ if environ is None else environ
    port = int(env.get("MASTER_PORT", 29500))
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]),
                       env.get("MASTER_ADDR", "127.0.0.1"), port, "torchrun")
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", 1)) > 1:
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "127.0.0.1")
        return DistEnv(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]),
                       env.get("MASTER_ADDR") or first_host(nodelist), port, "slurm")
    return DistEnv()
