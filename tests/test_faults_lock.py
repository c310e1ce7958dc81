"""Fault: two writers of one run folder. Real second processes; a SIGKILLed holder's stale lock."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hpml_bench.runfolder.lock import LOCK
from tests.conftest import TINY
from tests.test_faults_nonfinite import error_line

RUN = [*TINY, "model=mlp"]


def start_train(cwd: Path, *args: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("hpml")
    return subprocess.Popen([str(exe), "train", *RUN, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HPML_LOCK_LEASE_S": "4"})


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow  # several runs, a real second process or a bitwise resume
def test_live_run_is_refused_then_its_stale_lock_is_taken_over(hpml, tmp_path):
    proc = start_train(tmp_path, "trainer.epochs=1000", "run_dir=live")
    try:
        wait_for(tmp_path / "live/checkpoints/last.pt", proc)
        holder = json.loads((tmp_path / "live" / LOCK).read_text())
        assert holder["pid"] == proc.pid
        for args in (["resume=live", "trainer.epochs=2000"], [*RUN, "run_dir=live"]):
            r = hpml("train", *args)
            assert r.rc == 2
            line = error_line(r.err)
            assert f"run folder live is in use by a live hpml train (pid {proc.pid} on " in line, line
        assert proc.poll() is None  # the holder trains on, untouched
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / "live" / LOCK).exists()  # a killed holder leaves its file; its flock is gone
    state = torch.load(tmp_path / "live/checkpoints/last.pt", map_location="cpu", weights_only=True)
    r = hpml("train", "resume=live", f"trainer.epochs={state['epoch'] + 1}")
    assert r.rc == 0, r.err
    assert not (tmp_path / "live" / LOCK).exists()  # released at the end


def write_lock(folder: Path, age_s: float, **holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"pid": 12345, "host": "othernode", "job": None, "restarts": 0, "started": "2026-12-01T00:00:00", **holder}
    (folder / LOCK).write_text(json.dumps(info))
    then = time.time() - age_s
    os.utime(folder / LOCK, (then, then))


@pytest.mark.parametrize("age_s, holder, env, refused", [
    (5, {}, {}, True),  # another host, fresh heartbeat: alive
    (600, {}, {}, False),  # another host, heartbeat past the lease: dead
    (5, {"job": "slurm:77", "restarts": 0}, {"SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "1"}, False),  # requeued job
    (5, {"job": "slurm:77", "restarts": 1}, {"SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": "1"}, True),  # duplicate start
    (5, {"job": "torchrun:abc", "restarts": 0}, {"TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_RESTART_COUNT": "2"}, False),
])
def test_lock_of_another_host(hpml, tmp_path, monkeypatch, age_s, holder, env, refused):
    for key in ("SLURM_JOB_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    write_lock(tmp_path / "run", age_s, **holder)
    r = hpml("train", *RUN, "trainer.epochs=1", "dataset.num_train=16", "run_dir=run")
    if refused:
        assert r.rc == 2 and "in use by a live hpml train (pid 12345 on othernode" in error_line(r.err)
        assert not (tmp_path / "run/config.yaml").exists()  # refused before anything ran
    else:
        assert r.rc == 0, r.err
        assert (tmp_path / "run/checkpoints/last.pt").is_file()


def test_export_refused_while_a_checkpoint_is_written(hpml, tmp_path):
    assert hpml("train", *RUN, "trainer.epochs=1", "run_dir=run").rc == 0
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "img.png")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from hpml_bench.runfolder.lock import writing_checkpoint\n"
        "with writing_checkpoint(Path('run/checkpoints')):\n    print('held', flush=True); time.sleep(60)")],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in (["export", "run=run", "format=torchscript"], ["cam", "run=run", "images=img.png"]):
            r = hpml(*command)
            assert r.rc == 2
            assert f"a checkpoint of run is being written by pid {holder.pid} on " in error_line(r.err)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "run/export/torchscript").exists()
    assert hpml("export", "run=run", "format=torchscript").rc == 0


@pytest.mark.dist
def test_a_refused_lock_stops_every_srun_task_at_once(tmp_path):
    # Two tasks as srun starts them (SLURM_PROCID, SLURM_NTASKS; no launcher that would kill
    # the other when one exits). Rank 0 used to refuse before joining the group, and rank 1
    # waited for it until strategy.timeout_s (600 s here).
    import socket

    write_lock(tmp_path / "run", 5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in ("RANK", "WORLD_SIZE")}
    env.update(SLURM_NTASKS="2", SLURM_JOB_NODELIST="127.0.0.1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    exe = Path(sys.executable).with_name("hpml")
    tasks = [subprocess.Popen([str(exe), "train", *RUN, "trainer.epochs=1", "run_dir=run", "strategy=ddp",
                               "strategy.backend=gloo", "strategy.timeout_s=600"], cwd=tmp_path, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)}) for rank in (0, 1)]
    started = time.time()
    try:
        errs = [task.communicate(timeout=180)[1] for task in tasks]
    finally:
        for task in tasks:
            task.kill()
    assert time.time() - started < 120
    for task, err in zip(tasks, errs):
        assert task.returncode == 2, err
        assert "in use by a live hpml train (pid 12345 on othernode" in error_line(err), err
    assert not (tmp_path / "run/config.yaml").exists()
