"""Decode path vs `hpml prepare` cache: epoch data_s under the same loader settings.

Builds a CIFAR-10-128-layout folder (root/train/class<k>/img<N>.png, 128x128 RGB) of
--images PNGs (not real data: smooth random images, so PNG decoding costs what a photo's
would), caches it once, then trains a tiny model for two epochs from each path, alternating,
and prints each round's data_s of the measured epoch (the second; the first is the warm-up
epoch every hpml summary leaves out), the medians and their ratio (target: cache <= 0.05x decode).

    python benchmarks/data_path.py --images 5000 --rounds 3 --workers 0 2
    python benchmarks/data_path.py --tiny      # seconds: the test suite's form
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hpml_bench.data.cache import prepare_cache
from hpml_bench.train.config import compose_train
from hpml_bench.train.run import run_training


def make_cifar128(root: Path, n: int, size: int = 128) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for i in range(n):
        folder = root / "train" / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        tile = np.roll(base, i, axis=(0, 1)) // 2 + rng.integers(0, 128, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(tile).resize((size, size), Image.BICUBIC).save(folder / f"img{i}.png")


def overrides(args, root: Path) -> list[str]:
    return ["dataset=cifar10_128", f"dataset.root={root}", "dataset.val_dir=null", "dataset.val_fraction=0.02",
            f"dataset.image_size={args.image_size}", f"dataset.batch_size={args.batch_size}",
            "model=mlp", "model.hidden=[32]", "trainer.epochs=2",
            "trainer.warmup_epochs=1", "trainer.checkpoint_every=0", "trainer.progress=never", "device=cpu"]


def epoch_times(args, root: Path, folder: Path, cache: bool, workers: int) -> tuple[float, float]:
    """(data_s, run_s) of the measured epoch: time waiting for batches, and the whole epoch (a
    look-ahead thread's work competes with training for the cores: it shows in run_s)."""
    cfg = compose_train([*overrides(args, root), f"dataset.cache={str(cache).lower()}", f"dataset.num_workers={workers}",
                         f"run_dir={folder}"])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        last = run_training(cfg, folder)[-1]
    return last["data_s"], last["run_s"]


def loader_images_per_s(args, root: Path, cache: bool, workers: int) -> float:
    """How fast the training loader alone hands out ready (float, augmented) batches: one
    pass over the train split through the strategy's device loader, no model."""
    from omegaconf import OmegaConf

    from hpml_bench.data import build_loaders
    from hpml_bench.strategies import StepSettings, build_strategy

    cfg = compose_train([*overrides(args, root), f"dataset.cache={str(cache).lower()}", f"dataset.num_workers={workers}"])
    strategy = build_strategy(OmegaConf.to_object(cfg.strategy), StepSettings(device="cpu"))
    strategy.setup()
    train, _ = build_loaders(OmegaConf.to_object(cfg.dataset), strategy, "classification", 0)
    start, n = time.perf_counter(), 0
    for images, _ in train:
        n += len(images)
    return n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--image-size", type=int, default=64, help="training size (the PNGs are 128x128)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader settings to compare under")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = p.parse_args()
    if args.tiny:
        args.images, args.image_size, args.batch_size, args.workers, args.rounds = 60, 16, 8, [0], 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "cifar10-128"
        start = time.perf_counter()
        make_cifar128(root, args.images)
        print(f"wrote {args.images} PNGs in {time.perf_counter() - start:.1f} s")
        from omegaconf import OmegaConf

        index = prepare_cache(OmegaConf.to_object(compose_train(overrides(args, root)).dataset), "classification")
        print(f"hpml prepare: {index['seconds']:.1f} s")
        for workers in args.workers:
            decode, cached, run_decode, run_cached = [], [], [], []
            for i in range(args.rounds):
                for cache, data, run in ((False, decode, run_decode), (True, cached, run_cached)):
                    d, r = epoch_times(args, root, Path(tmp) / f"{cache}{workers}-{i}", cache, workers)
                    data.append(d)
                    run.append(r)
                print(f"workers {workers} round {i}: decode data_s {decode[-1]:.2f} s (epoch {run_decode[-1]:.2f} s), "
                      f"cache data_s {cached[-1]:.3f} s (epoch {run_cached[-1]:.2f} s), ratio {cached[-1] / decode[-1]:.3f}")
            d, c = statistics.median(decode), statistics.median(cached)
            ratio = statistics.median(a / b for a, b in zip(cached, decode))
            rate = statistics.median(loader_images_per_s(args, root, True, workers) for _ in range(args.rounds))
            print(f"median, {workers} workers: decode {d:.2f} s, cache {c:.3f} s per epoch of {args.images} images "
                  f"(batch {args.batch_size}, {args.image_size}px): cache/decode = {c / d:.3f} (median of ratios "
                  f"{ratio:.3f}); whole epoch decode {statistics.median(run_decode):.2f} s, cache "
                  f"{statistics.median(run_cached):.2f} s; the cache loader alone: {rate:,.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
