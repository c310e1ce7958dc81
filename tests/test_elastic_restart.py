"""`torchrun --max-restarts=1 ... strategy=ddp`: a killed rank makes the restarted workers
resume from the last checkpoint and finish (CPU, gloo)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import TINY

pytestmark = [pytest.mark.dist, pytest.mark.slow]
ARGS = [*TINY, "model=mlp", "trainer.epochs=3", "dataset.num_train=1024", "strategy=ddp", "run_dir=runs/elastic"]


def worker_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with RANK=rank (a descendant of `launcher`)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ and b"hpml_bench" in cmdline and b"torch.distributed.run" not in cmdline \
                and "TORCHELASTIC_RESTART_COUNT=0".encode() in environ and _descends(int(entry.name), launcher):
            return int(entry.name)
    return None


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            return False
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc (Linux)")
def test_killed_rank_restarts_and_resumes_from_last_checkpoint(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--max-restarts=1",
               "--monitor-interval=0.2", "-m", "hpml_bench", "train", *ARGS]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    checkpoint = tmp_path / "runs/elastic/checkpoints/last.pt"
    end = time.time() + 240
    while not checkpoint.exists() and time.time() < end and proc.poll() is None:
        time.sleep(0.05)
    victim = worker_pid(proc.pid, 1)
    assert victim is not None, "rank 1 not found"
    os.kill(victim, signal.SIGKILL)  # the rank dies mid-run, without saving anything
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    assert "resuming runs/elastic/checkpoints/last.pt at epoch" in out, out[-4000:]
    assert len(pd.read_csv(tmp_path / "runs/elastic/epochs.csv")) == 3
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 3
