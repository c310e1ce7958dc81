"""Cost per training step of the ranks' out-of-memory agreement (trainer.auto_microbatch on
several ranks, strategies/agreement.py), through `hpml train` on 2 processes (gloo on CPU, or
NCCL on 2 GPUs).

Variants, alternated round by round so a shared machine's load hits each alike:
  off     trainer.auto_microbatch=false
  window  trainer.auto_microbatch=true (the default window: 3 agreeing batches per epoch)
  always  trainer.auto_microbatch=true trainer.auto_microbatch_agree_steps=1000000 (every batch
          agrees: an all-reduce per micro-batch and at the step's end; DDP syncs after the backward)
Per step: an epoch's train_s (the slowest rank) / its batches, over the epochs after the warm-up
one; prints each variant's median and spread (min-max) and its difference from `off`.

--latency N instead times the agreement point alone (OomAgreement._exchange: the all-reduce of
two numbers and its host sync) N times on 2 processes of a real DDP strategy, in blocks of 100,
and prints the median and spread per exchange: a step in the window pays (micro-batches + 1)
of them, a step outside it none.

    python benchmarks/oom_agreement.py --strategy ddp --rounds 3 --epochs 3 --steps 64
    python benchmarks/oom_agreement.py --latency 5000
    python benchmarks/oom_agreement.py --tiny      # seconds: both forms, the test suite's
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

VARIANTS = {
    "off": ["trainer.auto_microbatch=false"],
    "window": ["trainer.auto_microbatch=true"],
    "always": ["trainer.auto_microbatch=true", "trainer.auto_microbatch_agree_steps=1000000"],
}


def _exchange_times(rank: int, port: int, n: int, out) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import time

    from hpml_bench.strategies import STRATEGIES, StepSettings

    strategy = STRATEGIES.get("ddp")(STRATEGIES.schemas()["ddp"](), StepSettings("cpu", auto_microbatch=True))
    strategy.setup()
    strategy.barrier()
    blocks = []
    for _ in range(n // 100):
        start = time.perf_counter()
        for _ in range(100):
            strategy.agreement._exchange(None, done=True)
        blocks.append((time.perf_counter() - start) / 100)
    strategy.teardown()
    if rank == 0:
        out.put(blocks)


def latency(n: int) -> None:
    import multiprocessing
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_exchange_times, args=(r, port, n, out)) for r in (0, 1)]
    for p in procs:
        p.start()
    blocks = out.get()
    for p in procs:
        p.join()
    print(f"agreement exchange (gloo, 2 processes, {n} exchanges in blocks of 100): median "
          f"{statistics.median(blocks) * 1e6:.1f} us (min {min(blocks) * 1e6:.1f}, max {max(blocks) * 1e6:.1f})")


def per_step(folder: Path, batches: int) -> list[float]:
    epochs = pd.read_csv(folder / "epochs.csv")
    return list(epochs.loc[~epochs["warmup"], "train_s"] / batches)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp"])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=64, help="batches per rank and epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=int, default=0, help="time N agreement exchanges alone")
    parser.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = parser.parse_args()
    if args.tiny:
        latency(200)
        args.image_size, args.batch, args.steps, args.epochs, args.rounds = 8, 4, 2, 2, 1
    elif args.latency:
        return latency(args.latency)
    base = [f"model={args.model}", "dataset=synthetic", f"dataset.image_size={args.image_size}",
            f"dataset.batch_size={args.batch}", f"dataset.num_train={2 * args.batch * args.steps}",
            "dataset.num_val=32", f"trainer.epochs={args.epochs}", "trainer.progress=never",
            f"strategy={args.strategy}", "strategy.nproc_per_node=2", "trainer.checkpoint_every=0"]
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            names = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))  # ABC CBA ...
            for name in names:
                folder = Path(tmp) / f"{name}-{r}"
                cmd = [sys.executable, "-m", "hpml_bench", "train", *base, *VARIANTS[name], f"run_dir={folder}"]
                done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "offline"})
                if done.returncode:
                    sys.exit(f"{name}: {done.stderr.strip().splitlines()[-1]}")
                times[name] += per_step(folder, args.steps)
    off = statistics.median(times["off"])
    print(f"{args.strategy} x2, {args.model} {args.image_size}px, batch {args.batch}/rank, {args.steps} steps/epoch, "
          f"{args.rounds} rounds x {args.epochs - 1} measured epochs")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:7s} {median * 1e3:8.3f} ms/step  (min {min(values) * 1e3:.3f}, max {max(values) * 1e3:.3f})  "
              f"{(median - off) * 1e3:+.3f} ms vs off")


if __name__ == "__main__":
    main()
