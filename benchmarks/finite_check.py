"""Cost of the non-finite check (trainer.on_nonfinite=stop) per training step, on this device.

Runs real training steps of the smallest model (MLP, 16x16 shapes, batch 16: the cheapest step,
so the largest relative cost) in blocks, alternating blocks with the check's per-step part (keeping a
reference to the loss) and without it, and prints the medians per step and the difference.
Times are the main thread's CPU time (torch on one thread), so a machine shared with other
jobs, which stretches wall time, hardly moves them.

    python benchmarks/finite_check.py --rounds 200 --block 10
    python benchmarks/finite_check.py --tiny      # seconds: the test suite's form
"""
from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

import torch

from hpml_bench.faults.nonfinite import FiniteWatch
from hpml_bench.runfolder import RunFolder
from hpml_bench.strategies import StepSettings, build_strategy
from hpml_bench.train.config import compose_train, to_train_config
from hpml_bench.train.run import _build_trainer


def step_blocks(rounds: int, block: int) -> tuple[list[float], list[float]]:
    """Seconds per step of `block` real training steps (Strategy.train_step on one batch), with the
    check's per-step copy and without it, alternating block by block (the load of a shared machine
    then hits both alike)."""
    dcfg = compose_train(["model=mlp", "dataset.image_size=16", "dataset.batch_size=16", "dataset.num_train=64",
                          "dataset.num_val=16", "trainer.progress=never", "device=cpu"])
    cfg = to_train_config(dcfg)
    strategy = build_strategy(cfg.strategy, StepSettings("cpu"))
    strategy.setup()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _build_trainer(cfg, dcfg, strategy, RunFolder(tmp), {})
    batch = next(iter(trainer.train_loader))
    watch = FiniteWatch("stop", 1, strategy)
    watch.start_epoch(block, 0, strategy.device)
    on, off = [], []
    order = random.Random(0).choices((True, False), k=2 * rounds)  # a random order: no drift favours one side
    for checked in order:
        start = time.thread_time()
        for i in range(block):
            out = strategy.train_step(batch)
            if checked:
                watch.see(i, out.loss)
        if checked:
            watch.checked = 0
            watch.check(0, block - 1)  # the read at a check point: once per block, in the time
        elapsed = (time.thread_time() - start) / block
        (on if checked else off).append(elapsed)
    return on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = parser.parse_args()
    if args.tiny:
        args.rounds, args.block = 2, 2
    torch.set_num_threads(1)  # all work on this thread, so its CPU time is the step's cost
    on, off = step_blocks(args.rounds, args.block)
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"{args.rounds} alternated blocks of {args.block} steps; median per step: with the check "
          f"{m_on * 1e6:.1f} us, without {m_off * 1e6:.1f} us; cost {(m_on - m_off) * 1e6:+.2f} us "
          f"= {(m_on / m_off - 1) * 100:+.2f} % of a step")


if __name__ == "__main__":
    main()
