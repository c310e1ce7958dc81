"""hpml's trainer against a bare hand-written PyTorch loop: same model, data, batch.

Alternates the two (A B, B A, A B, ...) so machine noise and run order hit both alike, skips a warm-up round,
and prints samples/s of each round, the medians and their ratio (hpml / bare).

    python benchmarks/loop_overhead.py --rounds 5 --steps 20
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from hpml_bench.config import compose_train
from hpml_bench.run import run_training


def overrides(args) -> list[str]:
    return [f"model={args.model}", "dataset=synthetic", f"dataset.image_size={args.image_size}",
            f"dataset.batch_size={args.batch_size}", f"dataset.num_train={args.batch_size * args.steps}",
            "dataset.num_val=1", "trainer.epochs=1", "trainer.warmup_epochs=0", "trainer.checkpoint_every=0",
            "trainer.progress=never", "optimizer=sgd", "scheduler=constant", "device=cpu"]


def hpml_round(args, folder: Path) -> float:
    """samples/s of one hpml epoch (its own run_s: the loop, without start-up or validation)."""
    with contextlib.redirect_stdout(io.StringIO()):  # the epoch table, once per round, is noise here
        records = run_training(compose_train(overrides(args) + [f"run_dir={folder}"]), folder)
    return records[-1]["samples_per_s"]


def bare_round(args) -> float:
    """The same epoch written by hand: loader, forward, loss, backward, step."""
    from hpml_bench.config import to_train_config
    from hpml_bench.data import build_datasets
    from hpml_bench.models import build_model_from_config

    cfg = to_train_config(compose_train(overrides(args)))
    torch.manual_seed(cfg.trainer.seed)
    train, _ = build_datasets(cfg.dataset, "classification")
    loader = torch.utils.data.DataLoader(train, batch_size=args.batch_size, shuffle=True)
    model = build_model_from_config(cfg.model).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum,
                          weight_decay=cfg.optimizer.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    samples = 0
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        samples += len(y)
    return samples / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=20, help="batches per epoch")
    p.add_argument("--rounds", type=int, default=5, help="measured rounds after one warm-up round")
    args = p.parse_args()
    hpml, bare = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds + 1):
            # ABBA order: whichever runs second in a round does not always pay for it.
            if i % 2 == 0:
                h, b = hpml_round(args, Path(tmp) / f"r{i}"), bare_round(args)
            else:
                b, h = bare_round(args), hpml_round(args, Path(tmp) / f"r{i}")
            print(f"round {i}{' (warm-up)' if i == 0 else ''}: hpml {h:.1f} samples/s, bare {b:.1f} samples/s, ratio {h / b:.3f}")
            if i:
                hpml.append(h)
                bare.append(b)
    ratios = [h / b for h, b in zip(hpml, bare)]
    print(f"median: hpml {statistics.median(hpml):.1f} samples/s, bare {statistics.median(bare):.1f} samples/s, "
          f"ratio of medians {statistics.median(hpml) / statistics.median(bare):.3f}, median of ratios {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
