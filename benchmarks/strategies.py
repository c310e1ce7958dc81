"""Strategies side by side on one small model.

1. `single` against `ddp` at world size 1, in this process, alternating rounds (ABBA order):
   what the DDP wrapper itself costs (target: ddp/single >= 0.98).
2. Every multi-process strategy with 2 ranks (`strategy.nproc_per_node=2`), through the CLI.

On a CPU machine these numbers show each strategy's overhead, not GPU scaling: the 2 ranks
share the same cores. Prints a Markdown table of median samples/s over non-warm-up epochs.

    python benchmarks/strategies.py --rounds 5
    python benchmarks/strategies.py --tiny       # seconds per strategy: the test suite's form
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
from pathlib import Path

import torch

from hpml_bench.train.config import compose_train
from hpml_bench.train.run import run_training

TWO_RANK = {
    "ddp": ["strategy=ddp"],
    "ddp fp16 hook": ["strategy=ddp", "strategy.comm_hook=fp16"],
    "ddp powersgd": ["strategy=ddp", "strategy.comm_hook=powersgd", "strategy.powersgd_start_iter=2"],
    "fsdp": ["strategy=fsdp"],
    "pipe gpipe": ["strategy=pipe", "strategy.schedule=gpipe"],
    "pipe 1f1b": ["strategy=pipe", "strategy.schedule=1f1b"],
}

TINY_TWO_RANK = ("ddp", "fsdp", "pipe gpipe")  # one launch per kind of strategy


def base(args) -> list[str]:
    return [f"model={args.model}", "dataset=synthetic", f"dataset.image_size={args.image_size}",
            f"dataset.batch_size={args.batch_size}", f"dataset.num_train={args.batch_size * args.steps}",
            "dataset.num_val=64", f"trainer.epochs={args.epochs}", "trainer.warmup_epochs=1",
            "trainer.checkpoint_every=0", "trainer.progress=never", "optimizer=sgd", "scheduler=constant", f"device={args.device}"]


def in_process(args, strategy: str, folder: Path) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        records = run_training(compose_train([*base(args), f"strategy={strategy}", f"run_dir={folder}"]), folder)
    return statistics.median(r["samples_per_s"] for r in records if not r["warmup"])


def two_ranks(args, extra: list[str], folder: Path) -> dict:
    cmd = [sys.executable, "-m", "hpml_bench", "train", *base(args), *extra, "strategy.nproc_per_node=2", f"run_dir={folder}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode:  # reported in the table, not hidden
        lines = [l for l in proc.stderr.splitlines() if "Error" in l or "error:" in l]
        return {"failed": (lines[-1] if lines else f"exit code {proc.returncode}")[:160]}
    return json.loads((folder / "summary.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--only-world-size-1", action="store_true", help="skip the 2-rank runs")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: the 2-rank runs need 2 GPUs")
    p.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = p.parse_args()
    if args.tiny:
        # 8 per rank: a pipeline's 4 micro-batches of 2 (BatchNorm wants more than one sample)
        args.model, args.image_size, args.batch_size, args.steps, args.epochs, args.rounds = "resnet18", 32, 8, 2, 2, 1
    rows, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        single, ddp = [], []
        for i in range(args.rounds):
            # ABBA order: whichever runs second in a round does not always pay for it.
            for strategy in ("single", "ddp") if i % 2 == 0 else ("ddp", "single"):
                (single if strategy == "single" else ddp).append(in_process(args, strategy, Path(tmp) / f"{strategy}{i}"))
            print(f"round {i}: single {single[-1]:.1f}, ddp(ws=1) {ddp[-1]:.1f} samples/s", file=sys.stderr)
        base_rate = statistics.median(single)
        rows.append(("single", 1, args.batch_size, base_rate))
        rows.append(("ddp", 1, args.batch_size, statistics.median(ddp)))
        ratios = [d / s for s, d in zip(single, ddp)]
        two_rank = {k: v for k, v in TWO_RANK.items() if k in TINY_TWO_RANK} if args.tiny else TWO_RANK
        for name, extra in ({} if args.only_world_size_1 else two_rank).items():
            s = two_ranks(args, extra, Path(tmp) / name.replace(" ", "_"))
            if "failed" in s:
                failures.append(f"{name}: {s['failed']}")
                print(f"{name}: FAILED {s['failed']}", file=sys.stderr)
                continue
            rows.append((name, 2, s["global_batch"], s["median_samples_per_s"]))
            print(f"{name}: {s['median_samples_per_s']:.1f} samples/s", file=sys.stderr)
    print(f"\n{args.model}, synthetic {args.image_size}x{args.image_size}, batch {args.batch_size} per rank, "
          f"{args.steps} steps/epoch, {torch.cuda.get_device_name() if args.device == 'cuda' else f'CPU ({os.cpu_count()} cores)'}, "
          f"torch {torch.__version__}")
    print(f"ddp(ws=1)/single: median of {args.rounds} alternating rounds' ratios = {statistics.median(ratios):.3f}\n")
    print("| strategy | ranks | global batch | samples/s (median) | vs single |")
    print("|---|---|---|---|---|")
    for name, ranks, batch, rate in rows:
        print(f"| {name} | {ranks} | {batch} | {rate:.1f} | {rate / base_rate:.2f} |")
    for failure in failures:
        print(f"\nfailed: {failure}")


if __name__ == "__main__":
    main()
