"""Fault: a non-finite loss or gradients, injected for real by a learning rate that diverges."""
from __future__ import annotations

import torch

from tests.conftest import TINY

RUN = [*TINY, "model=mlp", "optimizer=sgd", "trainer.epochs=3"]  # 4 steps per epoch


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_stop_names_epoch_and_step_and_keeps_last_finite_checkpoint(hpml, tmp_path):
    # lr=10 (SGD, cosine): epoch 1 ends finite, the loss is NaN at epoch 2 step 2.
    r = hpml("train", *RUN, "optimizer.lr=10", "run_dir=run")
    assert r.rc == 3, r.err
    line = error_line(r.err)
    assert "non-finite loss (nan) at epoch 2 step 2" in line and "learning rate" in line and "fp16" in line, line
    last = tmp_path / "run/checkpoints/last.pt"
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1  # written after epoch 1, never after
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "run/summary.json").exists()


def test_stop_at_first_step_saves_nothing(hpml, tmp_path):
    r = hpml("train", *RUN, "optimizer.lr=1e9", "run_dir=run")
    assert r.rc == 3
    assert "at epoch 1 step 3" in error_line(r.err) and "nothing was saved" in r.err
    # the configured rate is the suspect, not the warm-up's current one (near 0 here)
    assert "optimizer.lr=1e+09, " in error_line(r.err) and " at this step)" in error_line(r.err)
    assert not (tmp_path / "run/checkpoints").exists()


def test_skip_drops_steps_and_stops_after_max_in_a_row(hpml, tmp_path):
    r = hpml("train", *RUN, "optimizer.lr=1e9", "trainer.on_nonfinite=skip", "trainer.max_nonfinite_steps=3", "run_dir=run")
    assert r.rc == 3
    assert "3 non-finite optimizer steps in a row up to epoch 2 step 1" in error_line(r.err)
    assert "epoch 1: dropped 2 optimizer step(s)" in r.err
    state = torch.load(tmp_path / "run/checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())
    # Lenient enough, the same run trains every epoch and leaves only finite weights.
    r = hpml("train", *RUN, "optimizer.lr=1e9", "trainer.on_nonfinite=skip", "trainer.max_nonfinite_steps=100", "run_dir=ok")
    assert r.rc == 0, r.err
    assert "epoch 3: dropped" in r.err
    state = torch.load(tmp_path / "ok/checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 3 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_bad_mode_is_one_line(hpml):
    r = hpml("train", *RUN, "trainer.on_nonfinite=ignore")
    assert r.rc == 2 and "use stop or skip" in error_line(r.err)
