"""What each `dataset.augment` op costs: epoch data_s on the decode path, and microseconds per
sample in one process.

Builds an image folder of --images PNGs (64x64, smooth random images), then for each variant
(no augmentation, each op alone, all of them) trains a tiny MLP (so that the loader, not the
step, sets the pace) for two epochs from the decode path with --workers loader workers, and
records the second epoch's data_s (the first is the warm-up epoch every summary leaves out).
Variants alternate within each round, in reversed order every other round (ABBA), and the
table gives each variant's median over the rounds, its spread, and the median of its per-round
ratio to the no-augmentation run of the same round.

Then, per op, the per-sample cost in this process on one thread (the work a worker does for
one sample: the op, its seed and fork, float conversion), alternated the same way:

    python benchmarks/augment_cost.py --images 1024 --rounds 3 --micro-rounds 5 --workers 2
    python benchmarks/augment_cost.py --tiny      # seconds: the test suite's form
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
import torch
from omegaconf import OmegaConf
from PIL import Image

from hpml_bench.data.sample_augment import SampleAugment, batch_mix
from hpml_bench.data.sample_rng import SampleKey
from hpml_bench.train.config import compose_train
from hpml_bench.train.run import run_training

OPS = ["hflip", "pad_crop", "random_resized_crop", "randaugment", "trivialaugment", "autoaugment", "augmix",
       "random_erasing", "mixup", "cutmix"]
ALL = "[random_resized_crop,hflip,randaugment,random_erasing,mixup,cutmix]"
VARIANTS = {"none": "false", **{op: f"[{op}]" for op in OPS}, "all (rrc,hflip,randaug,erasing,mixup,cutmix)": ALL}


def make_folder(root: Path, n: int, size: int = 64) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / "train" / f"class{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        tile = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(tile).resize((size, size), Image.BICUBIC).save(folder / f"img{i}.png")


def overrides(args, root: Path, augment: str) -> list[str]:
    return ["dataset=image_folder", f"dataset.root={root}", "dataset.val_dir=null", "dataset.val_fraction=0.02",
            f"dataset.image_size={args.image_size}", f"dataset.batch_size={args.batch_size}",
            f"dataset.num_workers={args.workers}", "dataset.persistent_workers=true", f"dataset.augment={augment}",
            "model=mlp", "model.hidden=[32]", "trainer.epochs=2", "trainer.warmup_epochs=1",
            "trainer.checkpoint_every=0", "trainer.progress=never", "device=cpu"]


def data_s(args, root: Path, folder: Path, augment: str) -> float:
    cfg = compose_train([*overrides(args, root, augment), f"run_dir={folder}"])
    folder.mkdir(parents=True, exist_ok=True)  # (`hpml train` makes it before a run)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return run_training(cfg, folder)[-1]["data_s"]


def per_sample_us(args, name: str, n: int) -> float:
    """Microseconds per sample of the op (a batch op: its batch's time / batch size), float
    conversion included; one thread, as each loader worker runs."""
    cfg = OmegaConf.to_object(compose_train([f"dataset.image_size={args.image_size}",
                                             f"dataset.augment={VARIANTS[name]}"]).dataset)
    image = torch.randint(0, 256, (3, args.image_size, args.image_size), dtype=torch.uint8)
    augment, mix = SampleAugment(cfg, False, True), batch_mix(cfg, "classification")
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    labels = torch.zeros(args.batch_size, dtype=torch.long)
    start = time.perf_counter()
    for i in range(n):
        augment(image, 0, SampleKey(i, 0, 1).rng_seed)
    for k in range(n // args.batch_size if mix is not None else 0):
        mix(images, labels, torch.Generator().manual_seed(k))
    return (time.perf_counter() - start) / n * 1e6


def table(title: str, rows: dict[str, list[float]], unit: str, ratio_to: str | None) -> None:
    print(f"\n{title}")
    print(f"| variant | median {unit} | min-max | x none (median of rounds) |")
    print("|---|---|---|---|")
    for name, values in rows.items():
        ratio = ""
        if ratio_to:
            ratio = f"{statistics.median(v / b for v, b in zip(values, rows[ratio_to]) if b > 0):.2f}"
        print(f"| {name} | {statistics.median(values):.3f} | {min(values):.3f}-{max(values):.3f} | {ratio} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--image-size", type=int, default=32, help="training size (the PNGs are 64x64)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--micro-rounds", type=int, default=5)
    p.add_argument("--skip-epochs", action="store_true", help="only the per-sample microbenchmark")
    p.add_argument("--skip-micro", action="store_true", help="only the epochs")
    p.add_argument("--micro-samples", type=int, default=512, help="samples per op and round in the microbenchmark")
    p.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = p.parse_args()
    if args.tiny:
        args.images, args.image_size, args.batch_size, args.workers = 40, 16, 8, 0
        args.rounds, args.micro_rounds, args.micro_samples = 1, 1, 16
    torch.set_num_threads(1)
    micro: dict[str, list[float]] = {name: [] for name in VARIANTS}
    # warm-up: first calls (lazy imports, allocator) are not the op's cost
    for name in [] if args.skip_micro else VARIANTS:
        per_sample_us(args, name, n=args.batch_size)
    for r in range(0 if args.skip_micro else args.micro_rounds):
        for name in (list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))):
            micro[name].append(per_sample_us(args, name, args.micro_samples))
    if not args.skip_micro:
        table(f"per sample, one thread, {args.image_size}x{args.image_size} uint8 (batch ops: batch of "
              f"{args.batch_size} / its size), {args.micro_rounds} rounds", micro, "us", "none")
    if args.skip_epochs:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_folder(root, args.images)
        epochs: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for r in range(args.rounds):
            for k, name in enumerate(list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))):
                epochs[name].append(data_s(args, root, Path(tmp) / f"run{r}-{k}", VARIANTS[name]))
                print(f"round {r + 1} {name}: data_s {epochs[name][-1]:.3f}", flush=True)
        table(f"decode path, {args.images} PNGs 64x64 -> {args.image_size}, batch {args.batch_size}, "
              f"{args.workers} workers, MLP; data_s of epoch 2, {args.rounds} rounds", epochs, "data_s", "none")


if __name__ == "__main__":
    main()
