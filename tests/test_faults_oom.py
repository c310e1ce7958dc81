"""Fault: out of memory at a chosen micro-batch size (HPML_SIMULATE_OOM_ABOVE, read at import)."""
from __future__ import annotations

import torch

import hpml_bench.strategies.step as step_module
from tests.conftest import TINY
from tests.test_faults_nonfinite import error_line
from tests.test_preempt import load

RUN = [*TINY, "model=mlp", "optimizer=sgd", "trainer.epochs=1"]  # batch 16


def test_oom_is_one_line_with_the_fixes(hpml, monkeypatch):
    monkeypatch.setattr(step_module, "oom_above", 8)
    r = hpml("train", *RUN, "run_dir=run")
    assert r.rc == 2
    line = error_line(r.err)
    assert "out of memory at batch size 16 per rank, peak " in line and " GiB" in line, line
    for fix in ("dataset.batch_size", "trainer.grad_accum_steps", "trainer.precision=bf16", "trainer.auto_microbatch=true"):
        assert fix in line


def test_auto_microbatch_halves_once_and_gives_the_same_result(hpml, tmp_path, monkeypatch):
    assert hpml("train", *RUN, "run_dir=plain").rc == 0
    monkeypatch.setattr(step_module, "oom_above", 5)
    r = hpml("train", *RUN, "trainer.auto_microbatch=true", "run_dir=auto")
    assert r.rc == 0, r.err
    said = [line for line in r.err.splitlines() if "out of memory at micro-batch" in line]
    assert said == ["hpml: out of memory at micro-batch 16: now 2 micro-batches of 8 per batch of 16 (trainer.auto_microbatch)",
                    "hpml: out of memory at micro-batch 8: now 4 micro-batches of 4 per batch of 16 (trainer.auto_microbatch)"], r.err
    plain, auto = load(tmp_path / "plain/checkpoints/last.pt"), load(tmp_path / "auto/checkpoints/last.pt")
    for key in plain["model"]:  # the same global batch: the same weights, up to float summation order
        torch.testing.assert_close(auto["model"][key], plain["model"][key], rtol=1e-5, atol=1e-6)
