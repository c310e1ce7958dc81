"""`hpml slurm` without a cluster: the checks before rendering, the rendered script, the
examples in scripts/slurm/, and the restart-resume rule."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hpml_bench.cli.train import with_restart_resume
from hpml_bench.slurm.examples import rendered_examples

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args, message", [
    (["strategy=ddp", "slurm.gpus_per_node=4", "slurm.tasks_per_node=2"], "slurm.tasks_per_node=2 but slurm.gpus_per_node=4"),
    (["dataset.num_workers=4", "slurm.cpus_per_task=2"], "slurm.cpus_per_task=2 is below dataset.num_workers+1=5"),
    (["slurm.time=2h"], "slurm.time=2h: use HH:MM:SS"),
    (["strategy=dp", "slurm.nodes=2", "slurm.gpus_per_node=2"], "strategy=dp (DataParallel) runs on one node"),
    (["strategy=dp", "slurm.gpus_per_node=1"], "strategy=dp needs at least 2 CUDA GPUs"),
    (["strategy=ddp", "strategy.nproc_per_node=2"], "drop strategy.nproc_per_node"),
    (["strategy=pipe", "slurm.gpus_per_node=2", "dataset.batch_size=30"], "does not split into strategy.n_microbatches"),
    (["slurm=nowhere"], "unknown slurm 'nowhere'"),
    (["slurm.gpus=2"], "slurm config: Key 'gpus' not in 'SlurmConfig'"),
    (["model=resnt18"], "did you mean"),
    (["strategy=single", "slurm.launcher=torchrun"], "slurm.launcher=torchrun starts worker processes"),
    (["strategy=ddp", "slurm.max_restarts=1"], "slurm.max_restarts restarts torchrun's workers"),
    (["strategy=ddp", "slurm.launcher=mpirun"], "slurm.launcher=mpirun: use one of srun, torchrun"),
    (["strategy=ddp", "slurm.nodes=2", "slurm.gpus_per_node=4", "slurm.tasks_per_node=1"],
     "slurm.tasks_per_node=1 but slurm.gpus_per_node=4"),
])
def test_impossible_jobs_fail_in_one_line_before_rendering(hpml, tmp_path, args, message):
    result = hpml("slurm", *args)
    assert result.rc == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "runs").exists()


def test_rendered_script_is_the_last_line_and_carries_the_job(hpml, tmp_path):
    result = hpml("slurm", "model=mlp", "strategy=ddp", "dataset.batch_size=8", "slurm=greene", "slurm.nodes=2",
                  "slurm.gpus_per_node=4", "slurm.partition=gpu", "slurm.account=pr_1", "slurm.signal=USR2")
    assert result.rc == 0, result.err
    text = (tmp_path / result.out.strip().splitlines()[-1]).read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gres=gpu:4", "#SBATCH --partition=gpu",
                 "#SBATCH --account=pr_1", "#SBATCH --signal=USR2@120", "#SBATCH --requeue"):
        assert line in text
    assert "singularity exec --nv --overlay" in text and "source /ext3/env.sh" in text
    assert 'hpml train model=mlp strategy=ddp dataset.batch_size=8 trainer.requeue_signal=USR2 "$@"' in text
    assert 'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text


def test_torchrun_form_starts_one_agent_per_node(hpml, tmp_path):
    result = hpml("slurm", "model=mlp", "strategy=ddp", "slurm=cluster", "slurm.nodes=2", "slurm.gpus_per_node=4",
                  "slurm.launcher=torchrun", "slurm.max_restarts=1")
    assert result.rc == 0, result.err
    text = (tmp_path / result.out.strip().splitlines()[-1]).read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --cpus-per-task=32", "#SBATCH --gres=gpu:4",
                 # the agent ignores the requeue signal (USR1 would kill it); its workers get it
                 'srun --ntasks-per-node=1 /bin/bash -c \'trap "" USR1; exec "$@"\' bash torchrun --nnodes="$SLURM_NNODES" --nproc-per-node=4',
                 '--rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT"', "--max-restarts=1 --no-python hpml train"):
        assert line in text, line
    assert "storage every node sees" in text


def test_examples_in_scripts_slurm_are_current_renderings():
    examples = rendered_examples()
    on_disk = {p.name: p.read_text() for p in (ROOT / "scripts/slurm").glob("*.sbatch")}
    assert on_disk == examples  # regenerate: python -m hpml_bench.slurm.examples scripts/slurm


def test_submit_without_sbatch_is_one_line(hpml, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = hpml("slurm", "model=mlp", "slurm.submit=true")
    assert result.rc == 2 and "sbatch is not on PATH" in result.err


def test_only_a_restarted_job_resumes_its_own_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs/7-x/checkpoints").mkdir(parents=True)
    (tmp_path / "runs/7-x/checkpoints/last.pt").write_bytes(b"")
    monkeypatch.setenv("HPML_RUN_ID", "7-x")
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT", raising=False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    assert with_restart_resume(["model=mlp"]) == ["model=mlp"]  # a first start never resumes
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert with_restart_resume(["model=mlp"]) == ["model=mlp", "resume=runs/7-x"]
    assert with_restart_resume(["resume=elsewhere"]) == ["resume=elsewhere"]  # explicit resume= wins
    monkeypatch.setenv("HPML_RUN_ID", "8-y")
    assert with_restart_resume(["model=mlp"]) == ["model=mlp"]  # no checkpoint there: a fresh start
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    monkeypatch.setenv("HPML_RUN_ID", "7-x")
    monkeypatch.setenv("HPML_CONTINUES", "7-x")  # a follow-up job of a job that could not be requeued
    assert with_restart_resume(["model=mlp"]) == ["model=mlp", "resume=runs/7-x"]


# Stand-ins for SLURM's commands on the batch host: each records how it was called.
STUB = """#!/bin/bash
echo "$(basename "$0") $* | HPML_CONTINUES=${HPML_CONTINUES:-} SLURM_JOB_ID=${SLURM_JOB_ID:-}" >> "$CALLS"
case "$(basename "$0")" in
  srun) [ -n "${LEAVE_REQUEST:-}" ] && echo "epoch 2 step 3" > "$HPML_REQUEUE_FILE"; exit "${STEP_EXIT:-0}" ;;
  scontrol) exit "${REQUEUE_EXIT:-0}" ;;
  sbatch) echo "99;cluster" ;;
esac
"""


def run_script(tmp_path, script: Path, **env) -> tuple[int, list[str], str]:
    """The rendered batch script on this machine as SLURM's batch host would run it, with
    srun / scontrol / sbatch stand-ins; (exit status, their calls, its output)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in ("srun", "scontrol", "sbatch"):
        (bin_dir / name).write_text(STUB)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.write_text("")
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "SLURM_JOB_ID": "5", "SLURM_CPUS_PER_TASK": "1"}
    done = subprocess.run(["bash", str(script), "trainer.epochs=3"], check=False, cwd=tmp_path, capture_output=True, text=True,
                          env={**base, **env}, timeout=60)
    return done.returncode, calls.read_text().splitlines(), done.stdout + done.stderr


@pytest.mark.parametrize("env, status, requeued, followed_up", [
    ({"STEP_EXIT": "1"}, 1, False, False),  # a failed run: its status, no requeue
    ({"STEP_EXIT": "0"}, 0, False, False),  # a finished run
    ({"STEP_EXIT": "75", "LEAVE_REQUEST": "1"}, 0, True, False),  # the requeue signal (srun form)
    ({"STEP_EXIT": "0", "LEAVE_REQUEST": "1"}, 0, True, False),  # ... under torchrun: exit 0, the file asks
    ({"STEP_EXIT": "75"}, 0, True, False),  # the exit code alone asks too
    ({"STEP_EXIT": "75", "LEAVE_REQUEST": "1", "REQUEUE_EXIT": "1"}, 0, True, True),  # not requeueable: a follow-up job
])
def test_the_batch_script_requeues_after_the_step_ends(hpml, tmp_path, env, status, requeued, followed_up):
    result = hpml("slurm", "model=mlp", "slurm=cluster")
    script = tmp_path / result.out.strip().splitlines()[-1]
    rc, calls, output = run_script(tmp_path, script, **env)
    assert rc == status, output
    assert calls[0].startswith("srun --ntasks=1 ") and "train model=mlp trainer.epochs=3 |" in calls[0], calls
    run_id = (tmp_path / "runs/.slurm-job-5").read_text().strip()
    assert ("scontrol requeue 5 |" in " ".join(calls)) == requeued, calls
    assert ("hpml: requeueing SLURM job 5 (" in output) == requeued, output
    assert not (tmp_path / "runs/.slurm-job-5.requeue").exists()  # consumed: a requeued start is not asked again
    if followed_up:
        follow = next(c for c in calls if c.startswith("sbatch"))
        # the same script (SLURM's copy of it) and arguments, after this job, naming the run it continues
        assert f"sbatch --parsable --dependency=afterany:5 {script} trainer.epochs=3 |" in follow
        assert follow.endswith(f"trainer.epochs=3 | HPML_CONTINUES={run_id} SLURM_JOB_ID=")  # no SLURM_* of this job
        assert f"job 99 goes on with runs/{run_id}" in output
    else:
        assert not any(c.startswith("sbatch") for c in calls), calls


def test_a_follow_up_job_goes_on_with_the_run_it_continues(hpml, tmp_path):
    result = hpml("slurm", "model=mlp", "slurm=cluster")
    script = tmp_path / result.out.strip().splitlines()[-1]
    rc, calls, output = run_script(tmp_path, script, SLURM_JOB_ID="99", HPML_CONTINUES="5-20261205-x")
    assert rc == 0 and "hpml run folder: runs/5-20261205-x" in output, output
    assert "HPML_CONTINUES=5-20261205-x" in calls[0]  # hpml sees it: a restart (faults.preemption.restarted)
