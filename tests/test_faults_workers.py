"""Fault: a data-loader worker SIGKILLed (as the OOM killer does) or stuck, for real."""
from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
from torch.utils.data import get_worker_info

from hpml_bench.data.shapes import TensorImages as Shapes
from hpml_bench.strategies.base import Strategy
from tests.conftest import TINY
from tests.test_faults_nonfinite import error_line
from tests.test_preempt import assert_bitwise_equal, load

# The shapes data set through 2 worker processes (fork: the patched __getitem__ goes with them);
# with augmentation: each sample draws from its own (seed, epoch, index), in whichever worker loads it.
RUN = [*TINY, "model=mlp", "trainer.epochs=2", "dataset.num_train=160", "dataset.num_workers=2",
       "dataset.worker_start=fork"]  # 10 steps per epoch


def fault_in_worker(monkeypatch, nth: int, action) -> None:
    """Worker 0 of the train set does `action` to itself at its nth sample (of 2 workers it serves
    batches 1, 3, 5, ...; its 49th sample opens batch 7, asked for while batch 3 trains)."""
    original, served = Shapes.__getitem__, {}

    def getitem(self, i):
        info = get_worker_info()
        if info is not None and info.id == 0 and len(self) == 160:
            served[os.getpid()] = served.get(os.getpid(), 0) + 1
            if served[os.getpid()] == nth:
                action()
        return original(self, i)

    monkeypatch.setattr(Shapes, "__getitem__", getitem)


@pytest.mark.slow  # several runs, a real second process or a bitwise resume
def test_killed_worker_is_one_line_with_a_mid_epoch_checkpoint(hpml, tmp_path, monkeypatch):
    assert hpml("train", *RUN, "run_dir=full").rc == 0
    with monkeypatch.context() as m:
        fault_in_worker(m, 49, lambda: os.kill(os.getpid(), signal.SIGKILL))
        r = hpml("train", *RUN, "run_dir=part")
    assert r.rc == 5, r.err
    line = error_line(r.err)
    # torch reports it from its SIGCHLD handler ("killed by signal") or its queue poll ("exited unexpectedly")
    assert "data-loader worker (pid " in line and ("was killed (Killed)" in line or "exited unexpectedly" in line), line
    assert "dataset.num_workers=2" in line, line
    assert "saved at epoch 1 step" in line and "resume with: hpml train resume=part" in line, line
    state = load(tmp_path / "part/checkpoints/last.pt")
    assert state["epoch"] == 0 and 0 < state["step"] < 10
    r = hpml("train", "resume=part")  # the worker is fine again: on to the uninterrupted run's result
    assert r.rc == 0, r.err
    assert_bitwise_equal(load(tmp_path / "full/checkpoints/last.pt")["model"], load(tmp_path / "part/checkpoints/last.pt")["model"])


def test_stuck_worker_times_out(hpml, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        fault_in_worker(m, 40, lambda: time.sleep(60))
        r = hpml("train", *RUN, "dataset.timeout_s=3", "run_dir=run")
    assert r.rc == 5, r.err
    assert "gave no batch for 3" in error_line(r.err) and "dataset.timeout_s" in r.err


def kill_a_worker_inside_step(monkeypatch, call: int) -> None:
    """In the `call`-th training step, after the optimizer step: SIGKILL one loader worker and
    wait until it is dead, so that its SIGCHLD reaches the main process inside the step (as on a
    busy machine, where the OOM killer's victim dies while the step runs)."""
    original, calls = Strategy.train_step, {"n": 0}

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == call:
            victim = multiprocessing.active_children()[0].pid
            os.kill(victim, signal.SIGKILL)
            os.waitid(os.P_PID, victim, os.WEXITED | os.WNOWAIT)  # dead, not reaped: SIGCHLD is pending now
            time.sleep(0.2)  # Python runs signal handlers here, still inside the step
        return out

    monkeypatch.setattr(Strategy, "train_step", step)


@pytest.mark.slow  # three runs, a bitwise resume
def test_a_worker_lost_during_a_step_stops_at_that_step_and_resumes_bitwise(hpml, tmp_path, monkeypatch):
    # The race a busy machine showed: torch's SIGCHLD handler raised wherever the main process
    # was; inside a step (after the optimizer step, before the trainer recorded it) the checkpoint
    # said step 3 and held the weights of step 4. hpml finds the lost worker at the next batch.
    assert hpml("train", *RUN, "run_dir=full").rc == 0
    with monkeypatch.context() as m:
        kill_a_worker_inside_step(m, 4)
        r = hpml("train", *RUN, "run_dir=part")
    assert r.rc == 5, r.err
    line = error_line(r.err)
    assert "data-loader worker (pid " in line and "saved at epoch 1 step 4:" in line, line
    assert "Traceback" not in r.err
    state = load(tmp_path / "part/checkpoints/last.pt")
    assert (state["epoch"], state["step"]) == (0, 4)
    assert hpml("train", "resume=part").rc == 0
    assert_bitwise_equal(load(tmp_path / "full/checkpoints/last.pt")["model"], load(tmp_path / "part/checkpoints/last.pt")["model"])


def test_a_worker_lost_in_validation_is_one_line_naming_the_epoch_checkpoint(hpml, tmp_path, monkeypatch):
    original, calls = Strategy.eval_step, {"n": 0}

    def step(self, *args, **kwargs):  # epoch 2's first validation batch (2 per epoch)
        calls["n"] += 1
        if calls["n"] == 3:
            victim = multiprocessing.active_children()[0].pid
            os.kill(victim, signal.SIGKILL)
            os.waitid(os.P_PID, victim, os.WEXITED | os.WNOWAIT)
            time.sleep(0.2)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Strategy, "eval_step", step)
    r = hpml("train", *RUN, "run_dir=run")
    assert r.rc == 5 and "Traceback" not in r.err, r.err
    line = error_line(r.err)
    assert "data-loader worker (pid " in line and "the last checkpoint run/checkpoints/last.pt resumes it" in line, line
    state = load(tmp_path / "run/checkpoints/last.pt")
    assert (state["epoch"], state["step"]) == (1, 0)  # epoch 1's own checkpoint, not one inside epoch 2
