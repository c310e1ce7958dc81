"""The step split: what measuring it costs, and where each strategy's training seconds went.

1. cost: the same run with trainer.step_split=true and =false, alternating (ABBA) in one
   session, for `single` and `ddp` (world size 1, in this process: its comm hook still runs);
   the median over rounds of each round's on/off ratio of train_s per step; and the clock's own
   cost per step measured alone (a bracket, two marks, a resolve).
2. table: every strategy with 2 ranks through the CLI (`strategy.nproc_per_node=2`), DDP with a
   fp32 and a fp16 all-reduce (seed 002's axis): the median over the measured epochs of compute,
   all / exposed communication, bubble and overhead, bytes per step and the link's Gbit/s, and
   for the pipeline the bubble share beside (p - 1)/(m + p - 1). DataParallel needs 2 GPUs:
   on CPU its row says so (tests/test_step_split.py checks its timing on CPU stand-ins).

    flock /tmp/hpml-measure.lock python benchmarks/step_split.py --rounds 6
    python benchmarks/step_split.py --tiny      # seconds: the test suite's form
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hpml_bench.strategies.split import SplitClock
from hpml_bench.train.config import compose_train
from hpml_bench.train.run import run_training

STRATEGIES = {
    "single (1 rank)": None,
    "ddp, fp32 all-reduce": ["strategy=ddp"],
    "ddp, fp16 all-reduce": ["strategy=ddp", "strategy.comm_hook=fp16"],
    "fsdp": ["strategy=fsdp"],
    "pipe gpipe (m=4)": ["strategy=pipe", "strategy.schedule=gpipe", "strategy.n_microbatches=4"],
    "pipe 1f1b (m=4)": ["strategy=pipe", "strategy.schedule=1f1b", "strategy.n_microbatches=4"],
}
TINY_ROWS = ("single (1 rank)", "ddp, fp32 all-reduce", "pipe 1f1b (m=4)")
PARTS = ("train_s", "compute_s", "comm_s", "comm_exposed_s", "bubble_s", "overhead_s")


def base(args) -> list[str]:
    return [f"model={args.model}", "dataset=synthetic", f"dataset.image_size={args.image_size}",
            f"dataset.batch_size={args.batch_size}", f"dataset.num_val={args.batch_size}", f"trainer.epochs={args.epochs}",
            "trainer.warmup_epochs=1", "trainer.checkpoint_every=0", "trainer.progress=never", "optimizer=sgd",
            "scheduler=constant", "device=cpu"]


def per_step_train_s(args, strategy: str, split: bool, folder: Path) -> float:
    overrides = [*base(args), f"dataset.num_train={args.batch_size * args.steps}", f"strategy={strategy}",
                 f"trainer.step_split={str(split).lower()}", f"run_dir={folder}"]
    folder.mkdir(parents=True)  # as `hpml train` makes it before the run starts
    with contextlib.redirect_stdout(io.StringIO()):
        records = run_training(compose_train(overrides), folder)
    return statistics.median(r["train_s"] for r in records if not r["warmup"]) / args.steps


def clock_cost_us(n: int) -> float:
    """One step's bracket with a communication and an exposed interval, alone."""
    clock = SplitClock()
    start = time.perf_counter()
    for _ in range(n):
        with clock.step():
            a = clock.mark()
            clock.add("comm", a, clock.mark())
            clock.add("exposed", a, clock.mark())
            clock.add_bytes(1.0, 1.0)
    return (time.perf_counter() - start) / n * 1e6


def cost(args, tmp: Path) -> list[str]:
    lines = [f"clock alone: {clock_cost_us(200 if args.tiny else 20000):.1f} us per step", "",
             "| strategy | train_s per step, split on (median) | off (median) | on/off (median of rounds) | min-max |",
             "|---|---|---|---|---|"]
    for strategy in ("single", "ddp"):
        on, off = [], []
        for i in range(args.rounds):
            for split in (True, False) if i % 2 == 0 else (False, True):
                (on if split else off).append(per_step_train_s(args, strategy, split, tmp / f"{strategy}-{split}-{i}"))
            print(f"{strategy} round {i}: on {on[-1] * 1e3:.2f} ms, off {off[-1] * 1e3:.2f} ms", file=sys.stderr)
        ratios = [a / b for a, b in zip(on, off)]
        lines.append(f"| {strategy} | {statistics.median(on) * 1e3:.2f} ms | {statistics.median(off) * 1e3:.2f} ms | "
                     f"{statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |")
    return lines


def two_ranks(args, extra: list[str], folder: Path) -> dict:
    ranks = "1" if extra is None else "2"
    cmd = [sys.executable, "-m", "hpml_bench", "train", *base(args), *(extra or []),
           # every rank runs `steps` steps (DDP and FSDP split the data, a pipeline's ranks share it)
           f"dataset.num_train={args.batch_size * args.steps * 2}", f"trainer.max_steps_per_epoch={args.steps}",
           f"strategy.nproc_per_node={ranks}" if extra else "",
           f"run_dir={folder}"]
    proc = subprocess.run([c for c in cmd if c], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:
        lines = [line for line in proc.stderr.splitlines() if "Error" in line or "error:" in line]
        return {"failed": (lines[-1] if lines else f"exit code {proc.returncode}")[:160]}
    return json.loads((folder / "summary.json").read_text())


def table(args, tmp: Path) -> list[str]:
    lines = ["| strategy | " + " | ".join(PARTS) + " | comm MB/step | Gbit/s | bubble share (expected) |",
             "|" + "---|" * (len(PARTS) + 4)]
    # the tiny form: one row of each kind (one rank, an all-reduce, a pipeline's bubble)
    rows = {k: v for k, v in STRATEGIES.items() if not args.tiny or k in TINY_ROWS}
    for name, extra in rows.items():
        s = two_ranks(args, extra, tmp / name.split()[0].replace(",", "") / str(len(lines)))
        if "failed" in s:
            lines.append(f"| {name} | failed: {s['failed']} |")
            continue
        cells = [f"{s[f'median_{k}']:.3f}" for k in PARTS]
        gbps = s.get("median_comm_gbps")
        bubble = (f"{s['bubble_fraction']:.2f} ({s['bubble_expected']:.2f})" if "bubble_expected" in s else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['median_comm_bytes'] / 1e6:.2f} | "
                     f"{'–' if gbps is None else f'{gbps:.2f}'} | {bubble} |")
        print(lines[-1], file=sys.stderr)
    lines.append("| dp | needs 2 CUDA GPUs: not run on CPU |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=8, help="steps per epoch (per rank)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=6, help="alternating on/off rounds of the cost measurement")
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-table", action="store_true")
    p.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = p.parse_args()
    if args.tiny:
        args.model, args.image_size, args.batch_size, args.steps, args.epochs, args.rounds = "mlp", 8, 4, 2, 2, 1
    torch.set_num_threads(1)  # as the 2-rank runs (OMP_NUM_THREADS=1): a shared machine's cores are not all ours
    head = (f"{args.model}, synthetic {args.image_size}x{args.image_size}, batch {args.batch_size} per rank, "
            f"{args.steps} steps/epoch/rank, {args.epochs} epochs (1 warm-up), CPU ({os.cpu_count()} cores, 1 thread per "
            f"process), "
            f"torch {torch.__version__}")
    out = [head, ""]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_cost:
            out += cost(args, Path(tmp)) + [""]
        if not args.skip_table:
            out += table(args, Path(tmp))
    print("\n".join(out))


if __name__ == "__main__":
    main()
