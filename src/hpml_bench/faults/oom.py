"""GPU out of memory in a training step: one line with the batch size, the peak memory and
the fixes (exit 2); with trainer.auto_microbatch=true the strategy halves its micro-batch and
accumulates instead (the same global batch), saying so once per halving.

Only an out-of-memory before any gradient of the step's accumulation window was added can
be retried (the forward pass, or the first micro-batch's backward); later ones are reported.
HPML_SIMULATE_OOM_ABOVE=N raises torch.OutOfMemoryError for micro-batches above N (CPU tests).
"""
from __future__ import annotations

import sys

import torch

from hpml_bench.errors import HpmlError


def next_micro_batch(strategy, exc: BaseException, batch: int, fresh_grads: bool) -> int:
    """The micro-batch to retry with (half the one that ran out of memory), or the one-line
    HpmlError when it cannot be retried. It reads the strategy; the strategy sets its own size.
    `fresh_grads`: no gradient of this accumulation window was added yet."""
    size = strategy.micro_batch or batch
    retry = strategy.step.auto_microbatch and fresh_grads and size > 1
    if not retry:
        peak = strategy.memory_peak_gib()
        total = (f" of {torch.cuda.get_device_properties(strategy.device).total_memory / 2**30:.1f} GiB"
                 if strategy.device.type == "cuda" else "")
        tried = f" (micro-batch {size})" if strategy.micro_batch else ""
        raise HpmlError(f"out of memory at batch size {batch} per rank{tried}, peak {peak:.2f} GiB{total}: "
                        f"lower dataset.batch_size (and raise trainer.grad_accum_steps to keep the global batch), "
                        f"use trainer.precision=bf16, or set trainer.auto_microbatch=true") from exc
    halved = max(1, size // 2)
    if strategy.is_main:
        print(f"hpml: out of memory at micro-batch {size}: now {-(-batch // halved)} micro-batches "
              f"of {halved} per batch of {batch} (trainer.auto_microbatch)", file=sys.stderr, flush=True)
    return halved
