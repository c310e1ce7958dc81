"""Ranks that agree on an out-of-memory (trainer.auto_microbatch on several ranks).

A rank that runs out of memory leaves the step while the others go on into the step's next
collective (a DDP gradient all-reduce, an FSDP all-gather): halving on that rank alone hangs the
job or splits the ranks' batches (Composer hit the same: mosaicml/composer #2117, #3510). So, in
the steps where an out-of-memory is likely, every rank meets the others at agreement points:
before each micro-batch (and each FSDP unit's forward), and once the step is done. Each point is
one all-reduce (max) of two numbers, [the rank that ran out + 1, not done yet]; a rank that ran
out keeps answering "done, out of memory" until every rank is done, so the points pair up
whichever point each rank had reached. Every rank then halves the same micro-batch.

These points cost an all-reduce and a host sync each, and DDP syncs the window's gradients after
the backward instead of overlapping it. So the ranks agree only in a window: the first
`trainer.auto_microbatch_agree_steps` batches of each epoch (where memory grows: the first
steps, after validation, after a backbone is unfrozen) and after each halving. An out-of-memory
outside the window is the one-line error (exit 2) on the rank that ran out.
"""
from __future__ import annotations

import torch


class PeerOutOfMemory(torch.OutOfMemoryError):
    """Another rank ran out of memory in this step: this rank leaves it too."""

    def __init__(self, rank: int):
        super().__init__(f"rank {rank} ran out of memory")
        self.rank = rank


class OomAgreement:
    """The agreement window and points of one strategy (its `reduce` is the collective)."""

    def __init__(self, strategy, window_steps: int):
        self.strategy = strategy
        self.window_steps = window_steps
        self.left = 0  # batches of the window still to agree on
        self.in_step = False  # inside a step of the window: the points exchange

    @property
    def possible(self) -> bool:
        return self.strategy.step.auto_microbatch and self.strategy.world_size > 1 and self.window_steps > 0

    def open(self) -> None:
        """A new epoch, or a halving: the next window_steps batches agree."""
        self.left = self.window_steps if self.possible else 0

    def start_step(self) -> bool:
        """Whether the ranks agree in the batch that starts now (the same answer on every rank)."""
        self.in_step = self.left > 0
        self.left = max(0, self.left - 1)
        return self.in_step

    def point(self) -> None:
        """Inside the step: raise PeerOutOfMemory when a rank has run out."""
        if self.in_step:
            rank, _ = self._exchange(None, done=False)
            if rank is not None:
                raise PeerOutOfMemory(rank)

    def settle(self, failure: BaseException | None) -> BaseException | None:
        """At the step's end on every rank: the out-of-memory any rank had (None: none), once
        every rank is done with the step."""
        mine = self.strategy.rank if failure is not None and not isinstance(failure, PeerOutOfMemory) else None
        self.in_step = False
        while True:
            rank, others_busy = self._exchange(mine, done=True)
            if not others_busy:
                break
        if rank is None:
            return None
        return failure if mine is not None else PeerOutOfMemory(rank)

    def _exchange(self, oom_rank: int | None, done: bool) -> tuple[int | None, bool]:
        flags = torch.tensor([0.0 if oom_rank is None else oom_rank + 1.0, 0.0 if done else 1.0])
        top, busy = self.strategy.reduce(flags, "max").tolist()
        return (int(top) - 1 if top else None), bool(busy)
