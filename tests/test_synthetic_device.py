"""dataset=synthetic made on the device (the default) or in host memory (synthetic_on=host):
same batches on a CPU device, seeded, sharded per rank, resumable mid-epoch."""
from __future__ import annotations

import pytest
import torch
from conftest import read_run
from omegaconf import OmegaConf

from hpml_bench.data import build_loaders
from hpml_bench.strategies import StepSettings, build_strategy
from hpml_bench.strategies.base import StrategyConfig
from hpml_bench.train.config import compose_train

ARGS = ["dataset=synthetic", "dataset.num_train=40", "dataset.num_val=12", "dataset.image_size=8",
        "dataset.batch_size=8", "dataset.num_classes=5"]


def _strategy(replicas=1, rank=0):
    strategy = build_strategy(StrategyConfig(name="single"), StepSettings(device="cpu"))
    if replicas > 1:  # the sharding a DDP rank asks its sampler for (the loaders read only this)
        strategy.__class__ = type("Sharded", (type(strategy),), {"data_parallel": (replicas, rank)})
    strategy.setup()
    return strategy


def _loaders(on, *extra, task="classification", strategy=None):
    cfg = OmegaConf.to_object(compose_train([*ARGS, f"dataset.synthetic_on={on}", *extra]).dataset)
    return build_loaders(cfg, strategy or _strategy(), task, 0)


def _epoch(loader, epoch=0, start_batch=0):
    loader.sampler.set_epoch(epoch)
    loader.sampler.start_index = start_batch * loader.batch_size
    return list(loader)


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_device_and_host_paths_give_the_same_seeded_batches(task):
    device, host = _loaders("device", task=task)[0], _loaders("host", "dataset.num_workers=1", task=task)[0]
    assert device.num_workers == 0 and device.dataset.in_process  # no worker: gathered where it lives
    assert host.num_workers == 1  # today's path: the DataLoader hands out samples
    a, b = _epoch(device, epoch=1), _epoch(host, epoch=1)
    assert len(a) == len(b) == 5
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype == torch.int64
        assert xa.shape == xb.shape == (8, 3, 8, 8)
        assert ya.shape == yb.shape == ((8, 8, 8) if task == "segmentation" else (8,))
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    labels = torch.cat([y.flatten() for _, y in a])
    classes = 2 if task == "segmentation" else 5  # mask_classes / num_classes
    assert labels.min() >= 0 and labels.max() == classes - 1
    # deterministic per seed; another seed, other tensors; another epoch, another order
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, _epoch(_loaders("device", task=task)[0], epoch=1)))
    other = _epoch(_loaders("device", "dataset.seed=1", task=task)[0], epoch=1)
    assert not torch.equal(a[0][0], other[0][0])
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in _epoch(device, epoch=2)])) \
        or task == "segmentation"


def test_device_path_shards_per_rank_and_resumes_mid_epoch():
    ranks = [_loaders("device", strategy=_strategy(2, r))[0] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3  # 20 samples each, batches of 8
    seen = [torch.cat([x.flatten(1) for x, _ in _epoch(loader)]) for loader in ranks]
    assert len(seen[0]) == len(seen[1]) == 20
    # disjoint shards of the 40 samples: no image in both ranks' epochs
    assert not (torch.cdist(seen[0], seen[1]) == 0).any()
    full = _epoch(ranks[0])
    resumed = _epoch(ranks[0], start_batch=1)
    assert len(resumed) == 2 and all(torch.equal(a[0], b[0]) for a, b in zip(full[1:], resumed))


def test_wrong_synthetic_on_is_one_line(hpml):
    result = hpml("train", "dataset=synthetic", "dataset.synthetic_on=gpu")
    assert result.rc == 2 and "dataset.synthetic_on=gpu: use device or host" in result.err


@pytest.mark.parametrize("on", ["device", "host"])
def test_a_run_trains_on_each_path(hpml, tmp_path, on):
    run = hpml("train", *ARGS, f"dataset.synthetic_on={on}", "trainer.epochs=1", "trainer.progress=never",
               "model=mlp", f"run_dir={tmp_path / on}")
    assert run.rc == 0, run.err
    epochs, summary = read_run(tmp_path / on)
    assert epochs["samples"].tolist() == [40] and summary["final"]["train_loss"] > 0
    # seconds from the process's start to the first step's end (in-process here: pytest's age)
    assert summary["startup_s"] > 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (on CPU the device path is tested above)")
def test_cuda_batches_are_made_on_the_gpu():
    from hpml_bench.strategies import StepSettings as Settings

    strategy = build_strategy(StrategyConfig(name="single"), Settings(device="cuda"))
    strategy.setup()
    train, _ = _loaders("device", "dataset.pin_memory=true", strategy=strategy)
    assert train.dataset.images.device.type == "cuda" and not train.pin_memory
    batches = _epoch(train)
    assert all(x.device.type == "cuda" and y.device.type == "cuda" and x.shape == (8, 3, 8, 8) for x, y in batches)
    again = _epoch(_loaders("device", strategy=strategy)[0])
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))  # seeded on the GPU too
