"""`hpml bench ... bench.launcher=slurm slurm=<preset>`: every cell (and repeat) its own SLURM job.

Each job's script is rendered exactly as `hpml slurm` renders it, with the nodes, tasks and GPUs
the cell's axes ask for (strategy.nproc_per_node -> tasks and GPUs per node, slurm.* axes -> the
job's settings). All jobs are submitted at once; their ids are kept in <bench folder>/slurm_jobs.json,
so a re-run of the same command waits for the unfinished ones instead of submitting them again,
skips the finished ones and submits again the ones whose job failed (as a local bench re-runs a
failed cell). A requeued job is only a job that takes longer.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Optional

from hpml_bench.bench.cells import Cell, abba_order, cell_row, cuda_needs, error_line, needs_text
from hpml_bench.bench.config import BenchConfig, hydra_value, is_slurm_key
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.writes import atomic_write_text
from hpml_bench.slurm.config import MULTI_PROCESS, check_job, compose_slurm
from hpml_bench.slurm.render import render
from hpml_bench.slurm.submit import submit
from hpml_bench.train.config import compose_train, to_train_config

JOBS = "slurm_jobs.json"
# A job in one of these states has ended for good; any other state (PENDING, RUNNING, REQUEUED,
# COMPLETING, ...) is waited for.
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE"}
# While SLURM requeues a job, squeue and scontrol can briefly not know it: only a job unknown to
# every tool for this long is taken as lost.
LOST_AFTER_S = 60.0


def _ask(command: list[str]) -> str:
    """A SLURM tool's output ('' when it is missing, fails or hangs)."""
    if shutil.which(command[0]) is None:
        return ""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return ""
    return done.stdout if done.returncode == 0 else ""


def job_states(ids: list[str]) -> dict[str, str]:
    """job id -> SLURM state: squeue for jobs SLURM still holds, then sacct (accounting), then
    scontrol (ended jobs the controller still remembers); a job none of them knows is absent."""
    states: dict[str, str] = {}
    for line in _ask(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T"]).splitlines():
        job, _, state = line.strip().partition("|")
        states[job] = state.split()[0] if state.strip() else ""
    missing = [j for j in ids if not states.get(j)]
    if missing:  # -X: the job's own line, not its steps'; "CANCELLED by 0" -> CANCELLED
        for line in _ask(["sacct", "-n", "-P", "-X", "-j", ",".join(missing), "-o", "JobID,State"]).splitlines():
            job, _, state = line.strip().partition("|")
            if job in missing and state.strip():
                states[job] = state.split()[0]
    for job in [j for j in ids if not states.get(j)]:
        words = dict(w.split("=", 1) for w in _ask(["scontrol", "show", "job", "-o", job]).split() if "=" in w)
        if words.get("JobState"):
            states[job] = words["JobState"]
    return {j: s for j, s in states.items() if j in ids and s}


class SlurmLauncher:
    """bench.launcher=slurm (runner.LAUNCHERS)."""

    def __init__(self):
        self.slurm_args: list[str] = []

    def check(self, cfg, values: dict[str, Any]) -> Optional[str]:
        """Why the cluster cannot run the cell (None: it can): CUDA settings where the job gets no
        GPU. The rest check_job checks in `job`, as the cell's nodes see it (not this machine)."""
        gpus = compose_slurm([*self.slurm_args, *[f"{k}={hydra_value(v)}" for k, v in values.items() if is_slurm_key(k)]])
        wanted = cuda_needs(cfg)
        if wanted and (gpus.gpus_per_node == 0 or cfg.device == "cpu"):
            return f"{needs_text(wanted)}; slurm={gpus.name} gives its jobs no GPU (set slurm.gpus_per_node)"
        return None

    def preflight(self, bench: BenchConfig, slurm_args: list[str]) -> None:
        if shutil.which("sbatch") is None:
            raise HpmlError("bench.launcher=slurm but sbatch is not on PATH; run on a login node "
                            "(or start scripts/slurm/local-cluster.sh up), or use bench.launcher=local")
        compose_slurm(slurm_args)  # an unknown preset or key, before anything else
        self.slurm_args = slurm_args

    def job(self, bench: BenchConfig, cell: Cell, r: int, rep_dir: Path, folder: Path) -> tuple[Path, str, Path]:
        """(script path, script text, log path) of one repeat of a cell, checked as `hpml slurm` checks."""

        cfg = to_train_config(compose_train(cell.overrides))
        strategy, nproc = cfg.strategy.name, getattr(cfg.strategy, "nproc_per_node", 1)
        preset = compose_slurm(self.slurm_args)
        name = f"bench-{cell.id}__rep{r}"
        resources = []
        if strategy in MULTI_PROCESS:  # SLURM starts the processes: one task (and GPU) per process
            resources.append(f"slurm.tasks_per_node={nproc}")
            if preset.gpus_per_node:
                if nproc > preset.gpus_per_node:
                    raise HpmlError(f"bench cell {cell.id} asks for {nproc} GPUs per node; slurm={preset.name} gives "
                                    f"{preset.gpus_per_node} (raise slurm.gpus_per_node or drop the cell)")
                resources.append(f"slurm.gpus_per_node={nproc}")
        elif strategy == "single" and preset.gpus_per_node:
            resources.append("slurm.gpus_per_node=1")
        axes = [f"{k}={hydra_value(v)}" for k, v in cell.values.items() if is_slurm_key(k)]
        script = folder / "slurm" / f"{cell.id}__rep{r}.sbatch"
        s = compose_slurm([*self.slurm_args, *resources, *axes, f"slurm.job_name={name}",
                           f"slurm.out_dir={folder / 'logs'}", f"slurm.script={script}"])
        train = [*cell.overrides, *(["strategy.nproc_per_node=1"] if nproc != 1 else [])]
        # an interrupted cell continues from its checkpoint, as a local bench's does
        train.append(f"resume={rep_dir}" if RunFolder(rep_dir).resumable else f"run_dir={rep_dir}")
        try:
            check_job(s, to_train_config(compose_train(train)))
        except HpmlError as exc:
            raise HpmlError(f"bench cell {cell.id}: {exc}") from None
        return script, render(s, strategy, train, str(script)), folder / "logs" / f"{name}-%j.out"

    def run(self, bench: BenchConfig, cells: list[Cell], folder: Path, console) -> bool:
        """Submit what needs a job, wait (bench.wait) and gather into cell.rows; False: jobs still
        queued (bench.wait=false), nothing gathered yet."""
        jobs: dict[str, dict[str, Any]] = json.loads((folder / JOBS).read_text()) if (folder / JOBS).is_file() else {}
        slots, new = [], []
        for n, (cell, r) in enumerate(abba_order(cells, bench.repeats or bench.form.repeats), 1):
            key, rep_dir = f"{cell.id}__rep{r}", folder / "cells" / cell.id / f"rep{r}"
            slots.append((n, cell, r, key, rep_dir))
            if not RunFolder(rep_dir).finished and (key not in jobs or jobs[key].get("gathered")):
                new.append((key, *self.job(bench, cell, r, rep_dir, folder)))  # every check before any sbatch
        (folder / "logs").mkdir(parents=True, exist_ok=True)  # SLURM cannot open its log in a missing folder
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **{k: str(v) for k, v in bench.form.env.items()}}
        for key, script, text, log in new:  # all at once: the cluster runs them as it can
            atomic_write_text(script, text)
            script.chmod(0o755)
            job = submit(script, env)
            jobs[key] = {"job": job, "script": str(script), "log": str(log).replace("%j", job),
                         "submitted": time.time()}
            atomic_write_text(folder / JOBS, json.dumps(jobs, indent=1))  # each id as soon as it exists
            console.print(f"submitted {key}: SLURM job {job}")
        waiting = {key for _, _, _, key, rep_dir in slots if not RunFolder(rep_dir).finished}
        seen: dict[str, float] = {}
        with console.status(f"waiting for {len(waiting)} SLURM jobs ...") as status:
            while waiting:
                states = job_states([jobs[key]["job"] for key in waiting])
                for key in sorted(waiting):
                    state = states.get(jobs[key]["job"])
                    seen[key] = time.time() if state else seen.get(key, time.time())
                    lost = state is None and (time.time() - seen[key] > LOST_AFTER_S or not bench.wait)
                    if state in FINAL or lost:
                        waiting.discard(key)
                        jobs[key]["state"] = state or "UNKNOWN (no longer known to squeue, sacct or scontrol)"
                atomic_write_text(folder / JOBS, json.dumps(jobs, indent=1))
                if not waiting or not bench.wait:
                    break
                status.update(f"waiting for {len(waiting)} SLURM jobs: "
                              f"{', '.join(sorted({states.get(jobs[k]['job'], '?') for k in waiting}))} ...")
                time.sleep(bench.poll_s)
        if waiting:
            console.print(f"{len(waiting)} of {len(slots)} SLURM jobs still queued or running "
                          f"({', '.join(jobs[k]['job'] for k in sorted(waiting))}); run the same command again to gather")
            return False
        for n, cell, r, key, rep_dir in slots:
            cell.rows.append(self.gather(n, cell, r, rep_dir, folder, jobs.get(key), console))
            if key in jobs:  # in a results table now: a re-run submits this cell again unless it finished
                jobs[key]["gathered"] = True
        atomic_write_text(folder / JOBS, json.dumps(jobs, indent=1))
        return True

    @staticmethod
    def gather(n: int, cell: Cell, r: int, rep_dir: Path, folder: Path, job: Optional[dict], console) -> dict:
        """One repeat's row: the run's numbers, or the job's state, error line and log."""
        if RunFolder(rep_dir).finished:
            # submission to summary; 0 for a cell finished before this bench's jobs
            wall = RunFolder(rep_dir).summary.stat().st_mtime - job["submitted"] if job else 0.0
            row = cell_row(cell, r, n, "done", "", rep_dir, folder, max(wall, 0.0))
            console.print(f"[{n}] [green]done[/] {cell.id} rep {r + 1}: {row['samples_per_s']:.1f} samples/s, "
                          f"run_s {row['run_s']:.2f}" + (f" (SLURM job {job['job']})" if job else " (finished earlier)"))
            return row
        log = Path(job["log"])
        text = log.read_text(errors="replace") if log.is_file() else ""
        error = f"SLURM job {job['job']} {job['state']}: {error_line(text) or 'no output'}; log {log}"
        console.print(f"[{n}] [red]failed[/] {cell.id} rep {r + 1}: {error}")
        return cell_row(cell, r, n, "failed", error, rep_dir, folder, 0.0)
