"""Parallel strategies over gloo with 2 CPU processes, through the real CLI."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import torch
from conftest import hpml_subprocess

import hpml_bench

pytestmark = pytest.mark.dist

# An MLP (no batch norm, no dropout) on fixed random tensors: every strategy must agree.
BASE = ["model=mlp", "dataset=synthetic", "dataset.image_size=8", "dataset.num_classes=4", "dataset.num_train=128",
        "dataset.num_val=32", "trainer.epochs=2", "optimizer=sgd", "optimizer.lr=0.05", "scheduler=constant",
        "trainer.progress=never"]


def train(hpml, name, *args):
    os.environ["HPML_RUN_ID"] = name
    try:
        result = hpml("train", *BASE, *args)
    finally:
        del os.environ["HPML_RUN_ID"]
    assert result.rc == 0, result.err
    return result


def params(tmp_path, name):
    return torch.load(tmp_path / "runs" / name / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same(a, b, atol):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def summary(tmp_path, name):
    return json.loads((tmp_path / "runs" / name / "summary.json").read_text())


def test_ddp_two_ranks_match_single_with_twice_the_batch(hpml, tmp_path):
    train(hpml, "single", "dataset.batch_size=32")
    train(hpml, "ddp", "strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16")
    assert_same(params(tmp_path, "single"), params(tmp_path, "ddp"), atol=1e-5)
    s = summary(tmp_path, "ddp")
    assert (s["strategy"], s["world_size"], s["batch_per_rank"], s["global_batch"]) == ("ddp", 2, 16, 32)
    # FLOPs per sample are the model's, whatever the strategy; achieved TFLOP/s counts every rank's samples
    assert s["flops_per_sample"] == summary(tmp_path, "single")["flops_per_sample"] > 0
    epochs = pd.read_csv(tmp_path / "runs" / "ddp" / "epochs.csv")
    assert (epochs["tflops"] - s["flops_per_sample"] * epochs["samples"] / epochs["run_s"] / 1e12).abs().max() < 1e-12


def test_reduced_epoch_record_is_max_of_times_and_sum_of_samples(hpml, tmp_path):
    train(hpml, "ddp", "strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16")
    epochs = pd.read_csv(tmp_path / "runs" / "ddp" / "epochs.csv")
    ranks = pd.read_csv(tmp_path / "runs" / "ddp" / "ranks.csv")
    assert sorted(ranks["rank"].unique()) == [0, 1]
    per_epoch = ranks.groupby("epoch")
    for key in ("data_s", "train_s", "run_s"):
        assert (per_epoch[key].max().values == epochs[key].values).all(), key
    assert (per_epoch["samples"].sum().values == epochs["samples"].values).all()
    assert (ranks["samples"] == 64).all() and (epochs["samples"] == 128).all()


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
def test_pipeline_two_stages_match_single(hpml, tmp_path, schedule):
    train(hpml, "single", "dataset.batch_size=32")
    train(hpml, schedule, "strategy=pipe", f"strategy.schedule={schedule}", "strategy.n_microbatches=4",
          "strategy.nproc_per_node=2", "dataset.batch_size=32")
    assert_same(params(tmp_path, "single"), params(tmp_path, schedule), atol=1e-4)
    single, pipe = (pd.read_csv(tmp_path / "runs" / n / "epochs.csv") for n in ("single", schedule))
    assert (pipe["samples"] == 128).all()  # counted once, on the last stage
    assert (pipe["train_loss"] - single["train_loss"]).abs().max() < 1e-4
    assert (pipe["val_acc"] == single["val_acc"]).all()
    assert summary(tmp_path, schedule)["flops_per_sample"] == summary(tmp_path, "single")["flops_per_sample"] > 0


def test_fsdp_matches_ddp_and_its_checkpoint_loads_on_one_device(hpml, tmp_path):
    train(hpml, "ddp", "strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16")
    train(hpml, "fsdp", "strategy=fsdp", "strategy.nproc_per_node=2", "dataset.batch_size=16")
    fsdp = params(tmp_path, "fsdp")
    assert_same(params(tmp_path, "ddp"), fsdp, atol=1e-5)
    model = hpml_bench.build_model("mlp", input_size=8, num_classes=4)
    model.load_state_dict(fsdp)  # full, unsharded tensors


def test_fsdp_shards_a_model_with_batch_norm_and_grouped_split_points(hpml, tmp_path):
    # ResNet's stem/head split points are Sequentials made up for grouping: FSDP must skip them.
    result = hpml("train", "model=resnet18", "dataset=synthetic", "dataset.image_size=16", "dataset.num_train=64",
                  "dataset.num_val=16", "dataset.batch_size=16", "trainer.epochs=1", "trainer.progress=never",
                  "strategy=fsdp", "strategy.nproc_per_node=2")
    assert result.rc == 0, result.err
    state = torch.load(next((tmp_path / "runs").glob("*/checkpoints/last.pt")), weights_only=True)["model"]
    model = hpml_bench.build_model("resnet18", num_classes=10, in_channels=3)
    model.load_state_dict(state)


def test_fp16_gradient_compression_stays_close_to_fp32(hpml, tmp_path):
    train(hpml, "fp32", "strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16")
    train(hpml, "fp16", "strategy=ddp", "strategy.nproc_per_node=2", "dataset.batch_size=16", "strategy.comm_hook=fp16")
    fp32, fp16 = params(tmp_path, "fp32"), params(tmp_path, "fp16")
    assert_same(fp32, fp16, atol=1e-2)
    assert any(not torch.equal(fp32[k], fp16[k]) for k in fp32)  # the hook did compress


def test_ordered_reduce_is_bitwise_the_same_whatever_the_bucket_layout(hpml, tmp_path):
    # Over 4 ranks a ring all-reduce's sums depend on where an element lies in its bucket
    # (float addition is not associative); the ordered hook's do not.
    four = ["strategy=ddp", "strategy.nproc_per_node=4", "dataset.batch_size=8"]
    train(hpml, "ring", *four)
    for cap in ("0.001", "1000"):  # one bucket per parameter / one bucket for all
        train(hpml, f"ordered_{cap}", *four, "strategy.comm_hook=ordered", f"strategy.bucket_cap_mb={cap}")
    small, large = params(tmp_path, "ordered_0.001"), params(tmp_path, "ordered_1000")
    assert all(torch.equal(small[k], large[k]) for k in small)
    assert_same(params(tmp_path, "ring"), small, atol=1e-5)  # the same mean, to rounding


def test_torchrun_form_writes_one_run_folder(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                "-m", "hpml_bench", "train", *BASE, "strategy=ddp", "dataset.batch_size=16"]
    proc = subprocess.run(torchrun, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p for p in (tmp_path / "runs").iterdir()]
    assert len(folders) == 1  # rank 1's own folder was given up for rank 0's
    s = json.loads((folders[0] / "summary.json").read_text())
    assert s["world_size"] == 2 and s["strategy"] == "ddp"
    assert proc.stdout.count("run folder:") == 1  # rank 0 prints, rank 1 does not


CRASH_RANK_1 = """
import os
if os.environ.get("RANK") == "1":
    import hpml_bench.train.trainer as t
    def crash(self, epoch):
        raise RuntimeError("injected failure on rank 1")
    t.Trainer.train_epoch = crash
"""


@pytest.mark.parametrize("form", ["hpml", "torchrun"])
def test_a_crashing_rank_fails_the_run_without_hanging(tmp_path, form):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(textwrap.dedent(CRASH_RANK_1))
    env = {"PYTHONPATH": str(tmp_path / "inject")}
    args = [*BASE, "strategy=ddp", "strategy.timeout_s=60"]
    start = time.perf_counter()
    if form == "hpml":
        result = hpml_subprocess(["train", *args, "strategy.nproc_per_node=2"], tmp_path, env=env, timeout=240)
        rc, err = result.rc, result.err
        assert "error: worker rank 1 failed" in err
    else:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                               "-m", "hpml_bench", "train", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=240, env={**os.environ, **env})
        rc, err = proc.returncode, proc.stderr
    assert rc != 0
    assert "injected failure on rank 1" in err
    assert time.perf_counter() - start < 120


@pytest.mark.parametrize("args, message", [
    (["strategy=dp"], "strategy=dp needs at least 2 CUDA GPUs"),
    (["strategy=ddp", "strategy.backend=nccl"], "strategy.backend=nccl needs CUDA GPUs"),
    (["strategy=pipe", "strategy.nproc_per_node=3", "strategy.schedule=interleaved_1f1b", "strategy.stages_per_rank=2"],
     "strategy=pipe needs 6 stages (3 processes x 2) but model mlp has 4 split points"),
    (["strategy=pipe", "model=unet_tiny", "task=segmentation", "strategy.nproc_per_node=2", "dataset.image_size=16"],
     "UNet declares no pipeline split points"),
    (["strategy=pipe", "dataset.batch_size=30"], "does not split into strategy.n_microbatches=4"),
    (["strategy=pipe", "trainer.grad_accum_steps=2"], "strategy=pipe accumulates over micro-batches"),
    (["strategy=ddp", "strategy.nproc_per_node=2", "strategy.comm_hook=powersgd"], "comm_hook=powersgd needs the nccl backend"),
    (["strategy=ddp", "strategy.backend=gloo", "strategy.comm_hook=powersgd"], "comm_hook=powersgd needs the nccl backend"),
])
def test_impossible_combinations_fail_before_launch(hpml, tmp_path, args, message):
    result = hpml("train", *BASE, *args)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1
