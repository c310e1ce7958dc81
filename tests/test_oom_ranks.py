"""trainer.auto_microbatch on two ranks (gloo, CPU), with an out-of-memory injected on rank 1
only, in the middle of the model's forward: both ranks halve to the same micro-batch through the
strategy (rank 0 says so, naming rank 1) and the result is the unsplit run's; past the agreement
window the rank that ran out stops the run with its one line instead of hanging."""
from __future__ import annotations


import pytest
import torch

from tests.conftest import hpml_subprocess, sitecustomize_env

pytestmark = [pytest.mark.dist, pytest.mark.slow]

BASE = ["model=mlp", "dataset=synthetic", "dataset.image_size=8", "dataset.num_classes=4", "dataset.num_train=128",
        "dataset.num_val=32", "trainer.epochs=2", "optimizer=sgd", "optimizer.lr=0.05", "scheduler=constant",
        "trainer.progress=never"]
TWO = ["strategy.nproc_per_node=2", "strategy.timeout_s=60"]  # a hang fails in a minute, not ten

# Every worker logs the batch of each training forward; rank 1 runs out of memory after the
# first block (past FSDP's first all-gather, before the next) for batches above 8, from the
# HPML_TEST_OOM_FROM-th training forward on (HPML_TEST_OOM_IN=backward: in its backward).
INJECT = """
import os
rank = os.environ.get("RANK")
if rank is not None:
    import torch
    from hpml_bench.models import mlp
    log = os.path.join(os.environ["HPML_TEST_LOG"], f"rank{rank}.txt")
    first = int(os.environ.get("HPML_TEST_OOM_FROM", "1"))
    in_backward = os.environ.get("HPML_TEST_OOM_IN") == "backward"
    calls = [0]

    def run_out(grad):
        raise torch.OutOfMemoryError("injected: rank 1 ran out of memory in the backward pass")

    def forward(self, x):
        training = torch.is_grad_enabled() and self.training and x.device.type != "meta"  # not the FLOPs count
        if training:
            calls[0] += 1
            with open(log, "a") as f:
                f.write(f"{len(x)}\\n")
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == 0 and training and rank == "1" and len(x) > 8 and calls[0] >= first:
                if in_backward:
                    x.register_hook(run_out)
                else:
                    raise torch.OutOfMemoryError("injected: rank 1 ran out of memory after the first block")
        return self.head(x)

    mlp.MLP.forward = forward
"""


@pytest.fixture
def inject(tmp_path):
    (tmp_path / "log").mkdir()
    return {**sitecustomize_env(tmp_path / "inject", INJECT), "HPML_TEST_LOG": str(tmp_path / "log"),
            "WANDB_MODE": "offline"}


def sizes(tmp_path, rank: int) -> list[int]:
    return [int(line) for line in (tmp_path / "log" / f"rank{rank}.txt").read_text().split()]


def weights(tmp_path, run: str) -> dict:
    return torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_both_ranks_halve_when_one_runs_out_and_train_as_unsplit(tmp_path, inject, strategy):
    plain = hpml_subprocess(["train", *BASE, "dataset.batch_size=32", "run_dir=plain"], tmp_path)
    assert plain.rc == 0, plain.err
    r = hpml_subprocess(["train", *BASE, f"strategy={strategy}", *TWO, "dataset.batch_size=16",
                         "trainer.auto_microbatch=true", "run_dir=auto"], tmp_path, env=inject)
    assert r.rc == 0, r.err
    said = [line for line in r.err.splitlines() if "out of memory at micro-batch" in line]
    assert said == ["hpml: out of memory at micro-batch 16 on rank 1: now 2 micro-batches of 8 per batch of 16 "
                    "(trainer.auto_microbatch, every rank)"], r.err
    # rank 0 never ran out: it halved because rank 1 did (4 batches x 2 epochs, the first one tried at 16)
    assert sizes(tmp_path, 0) == [16] + [8] * 16, sizes(tmp_path, 0)
    assert sizes(tmp_path, 1) == [16] + [8] * 16, sizes(tmp_path, 1)
    a, b = weights(tmp_path, "plain"), weights(tmp_path, "auto")
    for key in a:  # global batch 32 either way: the same weights up to float summation order
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5, msg=key)


def test_out_of_memory_on_one_rank_past_the_window_stops_the_run_in_one_line(tmp_path, inject):
    r = hpml_subprocess(["train", *BASE, "strategy=ddp", *TWO, "dataset.batch_size=16",
                         "trainer.auto_microbatch=true", "trainer.auto_microbatch_agree_steps=2", "run_dir=late"],
                        tmp_path, env={**inject, "HPML_TEST_OOM_FROM": "3"}, timeout=240)
    assert r.rc == 2, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: out of memory on rank 1 at batch size 16 per rank, peak "), errors
    assert ("after the ranks' agreement window (trainer.auto_microbatch_agree_steps=2 batches of each epoch; "
            "raise it), lower dataset.batch_size") in errors[0]
    assert "Traceback" not in r.err


def test_out_of_memory_in_fsdp_backward_on_one_rank_stops_the_run_in_one_line(tmp_path, inject):
    r = hpml_subprocess(["train", *BASE, "strategy=fsdp", *TWO, "dataset.batch_size=16", "trainer.auto_microbatch=true",
                         "run_dir=bwd"], tmp_path, env={**inject, "HPML_TEST_OOM_IN": "backward"}, timeout=240)
    assert r.rc == 2, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: out of memory on rank 1 at batch size 16 per rank, peak "), errors
    assert "in the backward pass, whose collectives the other ranks cannot leave with it, lower" in errors[0]
    assert "Traceback" not in r.err
