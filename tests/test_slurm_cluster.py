"""`hpml slurm` against a real single-node SLURM cluster (scripts/slurm/local-cluster.sh).

CPU jobs with the gloo backend; tiny models and data; the cluster's fast requeue settings.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import TINY

pytestmark = pytest.mark.slurm
ROOT = Path(__file__).resolve().parent.parent
SMALL = [*TINY, "model=mlp", "trainer.epochs=2"]
# Long enough epochs (~1 s on an idle 2-core machine) to signal one mid-epoch: mlp, 8192 images
# of 16x16, 512 steps. (2048 images made 0.25 s epochs: too close for a signal sent by a test.)
LONG = [*TINY, "model=mlp", "trainer.epochs=3", "dataset.num_train=8192", "dataset.batch_size=16"]


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return done.returncode == 0 and any(state in done.stdout for state in ("idle", "mix", "alloc"))


@pytest.fixture(scope="module")
def cluster():
    """The local cluster; started here when root can start it, else a loud skip."""
    if not _cluster_up() and os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts/slurm/local-cluster.sh"), "up"], timeout=600)
    if not _cluster_up():
        pytest.skip("NO SLURM CLUSTER: `sudo scripts/slurm/local-cluster.sh up` could not start one here; "
                    "the SLURM tests did NOT run")


def submit(hpml, *args) -> str:
    result = hpml("slurm", *args, "slurm=local", "slurm.submit=true")
    assert result.rc == 0, result.err
    return result.out.strip().splitlines()[-1]


def job_field(job: str, name: str) -> str | None:
    done = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
    for word in done.stdout.split():
        if word.startswith(f"{name}="):
            return word.split("=", 1)[1]
    return None


FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE")


# The local cluster's AuthInfo=cred_expire (scripts/slurm/local-cluster.sh), plus a margin.
CRED_EXPIRE_S = 10 + 1.5


def wait_gone(job: str, timeout: float = 180) -> None:
    """Until the job has ended for good (polling scontrol: sbatch --wait notices the end late,
    and squeue briefly shows nothing while a job is being requeued).

    A requeued job waits for SLURM's begin time (the credential expiry plus a scheduler pass);
    once the credential has expired we ask for the start at once. Asking earlier makes slurmd
    refuse the start ("Job credential revoked") and the job ends FAILED: a flaky test."""
    end, requeued_at = time.time() + timeout, None
    while time.time() < end:
        state = job_field(job, "JobState")
        if state in FINAL:
            return
        if state == "PENDING" and job_field(job, "Restarts") not in (None, "0"):
            requeued_at = requeued_at or time.time()
            if time.time() - requeued_at > CRED_EXPIRE_S:
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
        time.sleep(0.5)
    raise AssertionError(f"job {job} not finished after {timeout} s: {log(job)[-2000:]}")


def log(job: str) -> str:
    files = list(Path("runs/slurm").glob(f"*-{job}.out"))
    return files[0].read_text() if files else ""


def failed_log(job: str) -> str:
    """A failed job's log for an assertion message: its first error lines (the cause, which a
    long C++ trace of a rank that lost it would push out of the tail) and then the tail."""
    text = log(job)
    first = [line for line in text.splitlines() if "error" in line.lower() or line.startswith("hpml:")][:15]
    return "\n".join(["first error lines:", *first, "tail:", text[-2000:]])


def run_folder(job: str) -> Path:
    folders = list(Path("runs").glob(f"{job}-*"))
    assert len(folders) == 1, (folders, log(job))
    return folders[0]


def wait_for(path_glob: str, timeout: float = 120) -> Path:
    end = time.time() + timeout
    while time.time() < end:
        found = list(Path().glob(path_glob))
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"nothing matched {path_glob} in {timeout} s")


def params(folder: Path) -> dict:
    return torch.load(folder / "checkpoints/last.pt", map_location="cpu", weights_only=True)["model"]


def test_two_task_ddp_job_runs_and_writes_a_two_rank_table(cluster, hpml):
    # a job name with a space: sbatch reads the rendered script's quotes (SLURM names the log %x-%j.out)
    job = submit(hpml, *SMALL, "strategy=ddp", "strategy.backend=gloo", "slurm.tasks_per_node=2",
                 "slurm.job_name='two ranks'")
    wait_gone(job)
    assert job_field(job, "JobState") == "COMPLETED", log(job)
    assert Path(f"runs/slurm/two ranks-{job}.out").is_file()
    folder = run_folder(job)
    ranks = pd.read_csv(folder / "ranks.csv")
    assert sorted(ranks["rank"].unique()) == [0, 1]
    assert json.loads((folder / "summary.json").read_text())["world_size"] == 2


def test_usr1_mid_epoch_requeues_and_resumes_bitwise(cluster, hpml):
    assert hpml("train", *LONG, "run_dir=runs/uninterrupted").rc == 0
    job = submit(hpml, *LONG)
    wait_for(f"runs/{job}-*/epochs.csv")  # epoch 1 done: the signal lands in epoch 2
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait_gone(job, timeout=240)
    text = log(job)
    assert "hpml: requeueing SLURM job" in text and "resuming" in text, text[-3000:]
    stopped = next(line for line in text.splitlines() if "stopped at epoch" in line)
    assert " step 0;" not in stopped  # stopped mid-epoch
    assert job_field(job, "JobState") == "COMPLETED" and job_field(job, "Restarts") == "1"
    folder = run_folder(job)
    assert len(pd.read_csv(folder / "epochs.csv")) == 3
    full, resumed = params(Path("runs/uninterrupted")), params(folder)
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_plain_scancel_saves_but_does_not_requeue(cluster, hpml):
    job = submit(hpml, *LONG)
    folder = wait_for(f"runs/{job}-*/epochs.csv").parent
    subprocess.run(["scancel", job], check=True)
    wait_gone(job)
    time.sleep(6)  # a requeue would show within SLURM's 5 s scheduler pass
    assert job_field(job, "JobState") == "CANCELLED" and job_field(job, "Restarts") == "0", log(job)
    state = torch.load(folder / "checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] >= 1 and not (folder / "summary.json").exists()


# A STAND-IN for Singularity (not installable here): it drops `exec`'s options and the image
# and runs the inner command on the host, so the Greene form's quoting and signals are tested.
STAND_IN = """#!/bin/bash
[ "$1" = exec ] && shift
while [[ "$1" == --* ]]; do case "$1" in --overlay|--bind) shift 2 ;; *) shift ;; esac; done
shift  # the image
echo "stand-in singularity ran: $*" >&2
exec "$@"
"""


def test_greene_form_runs_through_a_stand_in_singularity(cluster, hpml, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "singularity").write_text(STAND_IN)
    (bin_dir / "singularity").chmod(0o755)
    (tmp_path / "env.sh").write_text("export HPML_ENV_SOURCED=1\necho env script sourced >&2\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    result = hpml("slurm", *SMALL, "slurm=greene", "slurm.submit=true", "slurm.command=null", "slurm.cpus_per_task=1",
                  "slurm.mem=1G", "slurm.time=00:10:00", f"slurm.env_script={tmp_path}/env.sh",
                  f"slurm.overlay={tmp_path}/overlay.ext3", f"slurm.image={tmp_path}/image.sif")
    assert result.rc == 0, result.err
    script, job = result.out.strip().splitlines()
    assert "singularity exec --nv --overlay" in Path(script).read_text()
    wait_gone(job)
    text = log(job)
    assert "stand-in singularity ran" in text and "env script sourced" in text, text[-3000:]
    assert job_field(job, "JobState") == "COMPLETED", text[-3000:]
    assert (run_folder(job) / "summary.json").is_file()


# A container without SLURM's commands (Greene: `singularity exec` of an image that has none):
# the stand-in runs the training process with PATH holding only the venv's bin.
# 4096 images, 256 steps an epoch: a signal sent once epoch 1 is written lands in epoch 2 (3 epochs)
RUN_3 = [*TINY, "model=mlp", "trainer.epochs=3", "dataset.num_train=4096", "dataset.batch_size=16"]
NO_SLURM_INSIDE = STAND_IN.replace('exec "$@"', 'exec env PATH="$HPML_TEST_VENV_BIN" "$@"')
ENV_SH = "command -v scontrol >/dev/null && echo 'scontrol inside' >&2 || echo 'no scontrol inside' >&2\n"


def test_requeue_is_the_batch_scripts_without_slurm_commands_in_the_training_process(cluster, hpml, tmp_path,
                                                                                     monkeypatch):
    # Two jobs at once, both signalled in epoch 2: the Greene form through a container without
    # scontrol (requeued by its batch script), and a job that may not be requeued (sbatch
    # --no-requeue) whose training process has only the venv on PATH (a follow-up job goes on).
    venv_bin = str(Path(sys.executable).parent)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "singularity").write_text(NO_SLURM_INSIDE)
    (bin_dir / "singularity").chmod(0o755)
    (tmp_path / "env.sh").write_text(ENV_SH)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("HPML_TEST_VENV_BIN", venv_bin)  # the jobs inherit it (sbatch --export=ALL)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one core per job: two jobs on a shared machine
    greene = hpml("slurm", *RUN_3, "slurm=greene", "slurm.submit=true", "slurm.command=null", "slurm.cpus_per_task=1",
                  "slurm.mem=1G", "slurm.time=00:20:00", f"slurm.env_script={tmp_path}/env.sh",
                  f"slurm.overlay={tmp_path}/overlay.ext3", f"slurm.image={tmp_path}/image.sif")
    assert greene.rc == 0, greene.err
    in_container = greene.out.strip().splitlines()[-1]
    no_requeue = submit(hpml, *RUN_3, f"slurm.command=env PATH={venv_bin} {sys.executable} -m hpml_bench",
                        "slurm.extra=[--no-requeue]")
    waiting, end = [in_container, no_requeue], time.time() + 600
    while waiting and time.time() < end:
        for job in list(waiting):
            if list(Path().glob(f"runs/{job}-*/epochs.csv")):  # epoch 1 done: the signal lands in epoch 2
                subprocess.run(["scancel", "--signal=USR1", job], check=True)
                waiting.remove(job)
        time.sleep(0.1)
    assert not waiting, f"no epoch 1 in 600 s: {waiting}"

    wait_gone(in_container, timeout=900)
    text = log(in_container)
    assert "no scontrol inside" in text and "scontrol inside\n" not in text.replace("no scontrol inside\n", ""), text[-3000:]
    assert "FileNotFoundError" not in text and "Traceback" not in text, text[-3000:]
    assert text.count("hpml: requeueing SLURM job") == 1 and "resuming" in text, text[-3000:]
    assert job_field(in_container, "JobState") == "COMPLETED" and job_field(in_container, "Restarts") == "1", text[-3000:]
    assert len(pd.read_csv(run_folder(in_container) / "epochs.csv")) == 3

    wait_gone(no_requeue, timeout=900)
    text = log(no_requeue)
    assert job_field(no_requeue, "JobState") == "COMPLETED" and job_field(no_requeue, "Restarts") == "0", text[-3000:]
    follow_up = re.search(r"cannot be requeued; job (\d+) goes on with (runs/\S+)", text)
    assert follow_up and "Traceback" not in text, text[-3000:]
    wait_gone(follow_up.group(1), timeout=900)
    text = log(follow_up.group(1))
    assert job_field(follow_up.group(1), "JobState") == "COMPLETED", text[-3000:]
    assert f"hpml run folder: {follow_up.group(2)} " in text and "resuming" in text, text[-3000:]
    folder = run_folder(no_requeue)
    assert str(folder) == follow_up.group(2)
    assert len(pd.read_csv(folder / "epochs.csv")) == 3 and (folder / "summary.json").is_file()


def test_submitit_sweep_runs_one_job_per_combination(cluster, hpml):
    result = hpml("train", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
                  "hydra.launcher.timeout_min=5", "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1",
                  *SMALL, "trainer.epochs=1", "dataset.batch_size=8,16")
    assert result.rc == 0, result.err[-3000:]
    summaries = sorted(Path("runs/multirun").glob("*/*/summary.json"))
    assert len(summaries) == 2
    assert sorted(json.loads(p.read_text())["batch_per_rank"] for p in summaries) == [8, 16]
