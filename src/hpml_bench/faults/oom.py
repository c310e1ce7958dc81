"""GPU out of memory in a training step: one line with the batch size, the peak memory and
the fixes (exit 2); with trainer.auto_microbatch=true the strategy halves its micro-batch and
accumulates instead (the same global batch), saying so once per halving.

Only an out-of-memory in a batch that starts an accumulation window can be retried (its
gradients are zeroed and the whole batch runs again); later ones are reported. On several ranks
every rank must know, or none retries (strategies/agreement.py).
HPML_SIMULATE_OOM_ABOVE=N raises torch.OutOfMemoryError for micro-batches above N (CPU tests).
"""
from __future__ import annotations

import sys

import torch

from hpml_bench.errors import HpmlError


def next_micro_batch(strategy, exc: BaseException, batch: int, fresh_grads: bool, agreed: bool = False) -> int:
    """The micro-batch to retry with (half the one that ran out of memory), or the one-line
    HpmlError when it cannot be retried. It reads the strategy; the strategy sets its own size.
    `fresh_grads`: no gradient of this accumulation window was added yet. `agreed`: on several
    ranks, every rank knows (strategies/agreement.py): a rank alone never changes its size."""
    size = strategy.micro_batch or batch
    several = strategy.world_size > 1
    rank = getattr(exc, "rank", strategy.rank)  # the rank that ran out (another one: PeerOutOfMemory)
    retry = strategy.step.auto_microbatch and fresh_grads and size > 1 and (agreed or not several)
    if not retry:
        peak = strategy.memory_peak_gib()
        total = (f" of {torch.cuda.get_device_properties(strategy.device).total_memory / 2**30:.1f} GiB"
                 if strategy.device.type == "cuda" else "")
        tried = f" (micro-batch {size})" if strategy.micro_batch else ""
        where = f" on rank {rank}" if several else ""
        late = (f" after the ranks' agreement window (trainer.auto_microbatch_agree_steps="
                f"{strategy.step.agree_steps} batches of each epoch; raise it)," if several and
                strategy.step.auto_microbatch and not agreed else "")
        if getattr(exc, "in_backward", False):
            late = " in the backward pass, whose collectives the other ranks cannot leave with it,"
        auto = "" if strategy.step.auto_microbatch else ", or set trainer.auto_microbatch=true"
        raise HpmlError(f"out of memory{where} at batch size {batch} per rank{tried}, peak {peak:.2f} GiB{total}:{late} "
                        f"lower dataset.batch_size (and raise trainer.grad_accum_steps to keep the global batch), "
                        f"use trainer.precision=bf16{auto}") from exc
    halved = max(1, size // 2)
    if strategy.is_main:
        where, every = (f" on rank {rank}", ", every rank") if several else ("", "")
        print(f"hpml: out of memory at micro-batch {size}{where}: now {-(-batch // halved)} micro-batches "
              f"of {halved} per batch of {batch} (trainer.auto_microbatch{every})", file=sys.stderr, flush=True)
    return halved
