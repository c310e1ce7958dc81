"""resume=<run> under another strategy or number of ranks, through the real CLI (gloo, 2 CPU
processes): the run goes on where an uninterrupted run of the same global batch would be (weights
equal up to float summation order, optimizer momentum included); a split that cannot continue a
mid-epoch stop is refused in one line, the checkpoint unchanged."""
from __future__ import annotations

import hashlib
import os
import textwrap

import pytest
import torch

from tests.conftest import Result
from tests.test_preempt import SIGNAL_RANK_1, load

pytestmark = [pytest.mark.dist, pytest.mark.slow]

# An MLP without batch norm or dropout, on fixed random tensors: every split computes the same steps.
BASE = ["model=mlp", "dataset=synthetic", "dataset.image_size=8", "dataset.num_classes=4", "dataset.num_train=256",
        "dataset.num_val=32", "optimizer=sgd", "optimizer.lr=0.05", "trainer.progress=never"]


def assert_close(a: dict, b: dict, atol: float):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ok(result: Result) -> Result:
    assert result.rc == 0, result.err
    return result


def test_a_ddp_run_stopped_mid_epoch_goes_on_as_single_with_the_same_global_batch(hpml, tmp_path, monkeypatch):
    ok(hpml("train", *BASE, "trainer.epochs=2", "dataset.batch_size=32", "run_dir=full"))  # 8 steps an epoch
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(textwrap.dedent(SIGNAL_RANK_1))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    with monkeypatch.context() as m:  # rank 1 is signalled in step 3: both stop after step 4 of 8
        m.setenv("PYTHONPATH", f"{tmp_path / 'inject'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        stopped = hpml("train", *BASE, "trainer.epochs=2", "strategy=ddp", "strategy.nproc_per_node=2",
                       "dataset.batch_size=16", "trainer.stop_check_every=2", "run_dir=part")
    assert stopped.rc == 75, stopped.err  # the requeue signal: checkpointed, "start me again"
    checkpoint = tmp_path / "part/checkpoints/last.pt"
    assert (load(checkpoint)["epoch"], load(checkpoint)["step"]) == (0, 4)
    before = sha(checkpoint)

    # 4 steps x 2 ranks x 16 = 128 samples read: no step boundary of batches of 48
    refused = hpml("train", "resume=part", "strategy=single", "dataset.batch_size=48")
    errors = [line for line in refused.err.splitlines() if line.startswith("error: ")]
    assert refused.rc == 2 and errors == [refused.err.strip().splitlines()[-1]], refused.err  # one line, the last
    assert errors[0].startswith("error: resume=part: it stopped in epoch 1 after 128 samples, which is no "
                                "optimizer-step boundary of 1 x batch 48"), refused.err
    assert sha(checkpoint) == before

    resumed = ok(hpml("train", "resume=part", "strategy=single", "dataset.batch_size=32"))
    assert "not carried over from the run: strategy.nproc_per_node=2" in resumed.err
    assert ("the run was strategy=ddp on 2 ranks, 2 x batch 16 a step, it goes on as strategy=single on 1 rank, "
            "1 x batch 32 a step (epoch 1 from step 4; the schedule at optimizer step 4") in resumed.err
    full, part = load(tmp_path / "full/checkpoints/last.pt"), load(checkpoint)
    assert_close(full["model"], part["model"], atol=1e-5)  # cosine schedule, momentum: as if never stopped
    assert "the schedule at optimizer step 4, lr 0.05)" in resumed.err  # warm-up (4 steps) over: the peak
    assert part["history"][1]["lr"] == pytest.approx(full["history"][1]["lr"])  # then the same schedule
    assert part["optimizer"]["param_groups"][0]["lr"] == pytest.approx(full["optimizer"]["param_groups"][0]["lr"])


# (first run, resumed with, tolerance): each first run trains epoch 1 of 2 at a global batch of 32.
MOVES = {
    "fsdp->single": (["strategy=fsdp", "strategy.nproc_per_node=2", "dataset.batch_size=16"],
                     ["strategy=single", "dataset.batch_size=32"], 1e-5),
    "pipe->single": (["strategy=pipe", "strategy.nproc_per_node=2", "strategy.n_microbatches=4", "dataset.batch_size=32"],
                     ["strategy=single"], 1e-4),
    "single->ddp": (["dataset.batch_size=32"], ["strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16"], 1e-5),
    "single->fsdp": (["dataset.batch_size=32"], ["strategy=fsdp", "strategy.nproc_per_node=2", "dataset.batch_size=16"], 1e-5),
}


@pytest.mark.parametrize("move", MOVES)
def test_a_run_goes_on_under_another_strategy(hpml, tmp_path, move):
    first, then, atol = MOVES[move]
    constant = [*BASE, "scheduler=constant"]
    ok(hpml("train", *constant, "trainer.epochs=2", "dataset.batch_size=32", "run_dir=full"))
    ok(hpml("train", *constant, "trainer.epochs=1", *first, "run_dir=part"))
    resumed = ok(hpml("train", "resume=part", "trainer.epochs=2", *then))
    if "strategy.nproc_per_node=2" not in then:  # (the workers' stderr is not captured here)
        assert "hpml: resuming part/checkpoints/last.pt at epoch 2 step 0" in resumed.err
    full, part = load(tmp_path / "full/checkpoints/last.pt"), load(tmp_path / "part/checkpoints/last.pt")
    assert_close(full["model"], part["model"], atol=atol)
    assert part["optimizer"]["state"].keys() == full["optimizer"]["state"].keys()  # by parameter name
