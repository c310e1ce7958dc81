"""Preemption without SLURM: a signal mid-epoch saves a checkpoint that resumes bitwise;
a kill during a checkpoint write leaves the previous checkpoint loadable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from hpml_bench.strategies.base import Strategy
from tests.conftest import TINY

RUN = [*TINY, "model=mlp", "trainer.epochs=3", "dataset.num_train=96", "dataset.batch_size=16"]  # 6 steps/epoch


def signal_at_step(monkeypatch, call: int, signum=signal.SIGTERM):
    """Send this process `signum` from inside the `call`-th training step (a real signal)."""
    original, calls = Strategy.train_step, {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Strategy, "train_step", step)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_bitwise_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("call, stopped_at", [(9, (1, 3)), (6, (1, 0))])  # mid-epoch 2; end of epoch 1
def test_sigterm_mid_epoch_then_resume_is_bitwise_equal(hpml, tmp_path, monkeypatch, call, stopped_at):
    assert hpml("train", *RUN, "run_dir=full").rc == 0
    with monkeypatch.context() as m:
        signal_at_step(m, call)
        stopped = hpml("train", *RUN, "run_dir=part")
    assert stopped.rc == 128 + signal.SIGTERM, stopped.err
    assert "resume with: hpml train resume=part" in stopped.out.splitlines()[-1]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers given back
    state = load(tmp_path / "part/checkpoints/last.pt")
    assert (state["epoch"], state["step"]) == stopped_at
    assert not (tmp_path / "part/summary.json").exists()  # not a finished run
    resumed = hpml("train", "resume=part")
    assert resumed.rc == 0, resumed.err
    full, part = load(tmp_path / "full/checkpoints/last.pt"), load(tmp_path / "part/checkpoints/last.pt")
    assert_bitwise_equal(full["model"], part["model"])
    for k, v in full["optimizer"]["state"].items():
        assert_bitwise_equal(v, part["optimizer"]["state"][k])
    assert len(part["history"]) == 3


def test_ctrl_c_saves_a_checkpoint_and_exits_130(hpml, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        signal_at_step(m, 2, signal.SIGINT)
        stopped = hpml("train", *RUN, "run_dir=part")
    assert stopped.rc == 130
    assert (tmp_path / "part/checkpoints/last.pt").is_file()
    assert "stopped at epoch 1 step 2" in stopped.err


KILL_DURING_SAVE = """
import os, signal, sys, torch
from pathlib import Path
from hpml_bench.runfolder.checksums import atomic_torch_save
path = Path(sys.argv[1])
atomic_torch_save({"w": torch.ones(4)}, path)  # the previous checkpoint
real_save = torch.save
def dying_save(obj, f, *a, **k):
    f.write(b"half a checkpoint")
    f.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # killed in the middle of the write
torch.save = dying_save
atomic_torch_save({"w": torch.zeros(4)}, path)
"""


def test_kill_during_checkpoint_write_leaves_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILL_DURING_SAVE), str(path)], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # the half-written temp file
    assert torch.equal(load(path)["w"], torch.ones(4))


SIGNAL_RANK_1 = """
import os, signal
if os.environ.get("RANK") == "1":
    from hpml_bench.strategies.base import Strategy
    original, calls = Strategy.train_step, [0]
    def step(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGUSR1)  # only rank 1 is signalled
        return original(self, *args, **kwargs)
    Strategy.train_step = step
if os.environ.get("RANK") == "0":  # rank 0 slow to finish: the launcher must not stop it meanwhile
    import time
    from hpml_bench.train import run
    reported = run.report_stop
    def slow_report(*args, **kwargs):
        time.sleep(1.5)
        return reported(*args, **kwargs)
    run.report_stop = slow_report
"""


@pytest.mark.dist
@pytest.mark.slow
def test_ranks_agree_on_the_stop_step_and_resume_bitwise(hpml, tmp_path, monkeypatch):
    ddp = [*RUN, "trainer.epochs=2", "dataset.num_train=256", "strategy=ddp", "strategy.nproc_per_node=2",
           "trainer.stop_check_every=2"]  # 8 steps per rank and epoch
    assert hpml("train", *ddp, "run_dir=full").rc == 0
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(textwrap.dedent(SIGNAL_RANK_1))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)  # off SLURM even when the tests run in a job
    with monkeypatch.context() as m:
        m.setenv("PYTHONPATH", f"{tmp_path / 'inject'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        stopped = hpml("train", *ddp, "run_dir=part")
    assert stopped.rc == 75, stopped.err  # the requeue signal: checkpoint, exit 75 ("start me again"), off SLURM too
    state = load(tmp_path / "part/checkpoints/last.pt")
    assert (state["epoch"], state["step"]) == (0, 4)  # signalled in step 3, agreed at the next 2-step check
    assert hpml("train", "resume=part", "strategy.nproc_per_node=2").rc == 0
    assert_bitwise_equal(load(tmp_path / "full/checkpoints/last.pt")["model"],
                         load(tmp_path / "part/checkpoints/last.pt")["model"])


def test_requeue_signal_checkpoints_asks_for_the_requeue_and_exits_75(hpml, tmp_path, monkeypatch):
    # What the batch script relies on: the checkpoint on disk, then its request file, then exit 75.
    # hpml itself runs no scontrol (PATH holds none here).
    monkeypatch.setenv("HPML_REQUEUE_FILE", str(tmp_path / "job.requeue"))
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("PATH", "/nonexistent")
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        with monkeypatch.context() as m:
            signal_at_step(m, 2, signal.SIGUSR1)
            stopped = hpml("train", *RUN, "run_dir=part")
        # a late copy of the same notice (SLURM signals each node's tasks on its own) is ignored
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert stopped.rc == 75, stopped.err
    assert "exit 75 for the SIGUSR1 stop: the batch script requeues the job" in stopped.err
    assert (tmp_path / "job.requeue").read_text().startswith("epoch 1 step 2: ")
    assert (load(tmp_path / "part/checkpoints/last.pt")["step"]) == 2
    assert stopped.out.splitlines()[-1] == "resume with: hpml train resume=part"
