"""The device-side input pipeline: a loader wrapper that hands the trainer batches already
on the strategy's device and transformed there.

On a GPU: uint8 batches are pinned, copied without blocking on a side CUDA stream, and
augmented/normalised on that stream (the data set's batch_transform), one batch ahead, so the
copy and the transform of batch i+1 overlap the training of batch i. On CPU, a data set read
in this process (the memory-mapped cache: `in_process`) is read and transformed one batch ahead
on a helper thread. Either way the loop's data_s stays the time spent waiting for a ready
batch. Other loaders on CPU run the same steps in order.

A batch may carry its samples' seeds as a third element (the cache and GPU decode, read through
hpml's sampler: sample_rng.py); they stay on the host and go to the transform, whose per-sample
draws (flips, crops, ...) come from them. Batch-wide draws (MixUp/CutMix, and the flips of a batch
without seeds) come from a generator seeded per batch from the sampler's seed, epoch, rank and
the batch's place in the epoch: the same batches on every device, with or without look-ahead,
whatever dataset.num_workers is, and after a mid-epoch resume.
"""
from __future__ import annotations

import collections
import contextlib
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Optional

import torch

# (images, targets, generator, sample seeds or None) -> (images, targets), on the batch's device
Transform = Callable[[torch.Tensor, torch.Tensor, torch.Generator, Optional[torch.Tensor]],
                     tuple[torch.Tensor, torch.Tensor]]


class DeviceLoader:
    """Iterates a DataLoader's (inputs, targets) batches on `device`, transformed by `transform`.

    Anything else (sampler, dataset, num_workers, len) is the wrapped loader's. `prefetch`
    (default: on CUDA) runs the one-batch look-ahead; on CPU it only reorders host work, which
    the tests use to check that the look-ahead hands out the same batches."""

    # Batches the CPU look-ahead thread keeps ready: two absorb a step that is briefly shorter
    # than a read (tiny models on a shared 2-core machine); more only hold memory.
    host_depth = 2

    def __init__(self, loader, device: torch.device, transform: Optional[Transform] = None,
                 prefetch: Optional[bool] = None):
        self.loader, self.device, self.transform = loader, device, transform
        self.cuda = device.type == "cuda"
        self.prefetch = self.cuda if prefetch is None else prefetch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        if name == "loader":  # not set yet (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        seeds = self._batch_seeds()
        if self.prefetch:
            return self._ahead(seeds)
        if self.transform is not None and getattr(self.loader.dataset, "in_process", False) \
                and self.loader.num_workers == 0:
            return self._thread_ahead(seeds)
        return map(self._place, self.loader, seeds)

    def _batch_seeds(self) -> Iterator[int]:
        if self.transform is None:
            return itertools.repeat(0)
        sampler = self.loader.sampler
        if all(hasattr(sampler, a) for a in ("seed", "epoch", "rank")):  # DistributedSampler's
            first = getattr(sampler, "start_index", 0) // (self.loader.batch_size or 1)
            return (hash((sampler.seed, sampler.epoch, sampler.rank, k)) & (2**62 - 1) for k in itertools.count(first))
        return itertools.count(int(torch.randint(0, 2**62, ())))  # a plain loader: one draw per epoch

    def _place(self, batch, seed: int):
        """Copy to the device (non-blocking from pinned memory), then transform there."""
        inputs, targets, *seeds = batch  # the samples' seeds stay on the host
        inputs, targets = (self._to_device(t) for t in self._pinned((inputs, targets)))
        if self.transform is None:
            return inputs, targets
        with contextlib.nullcontext() if self.cuda else one_thread():
            return self.transform(inputs, targets, torch.Generator().manual_seed(seed), *seeds)

    def _pinned(self, batch):
        """Host tensors pinned for a CUDA copy. Anything else passes: tensors made on the device
        (dataset.synthetic_on=device) and encoded files (dataset.decode=gpu: the batch_transform
        decodes them there)."""
        if not self.cuda:
            return batch
        return tuple(t.pin_memory() if isinstance(t, torch.Tensor) and t.device.type == "cpu"
                     and not t.is_pinned() else t for t in batch)

    def _to_device(self, t):
        return t.to(self.device, non_blocking=self.cuda) if isinstance(t, torch.Tensor) else t

    def _thread_ahead(self, seeds: Iterator[int]) -> Iterator:
        """CPU: batch i+1 is gathered from the memory map and transformed on a helper thread
        (torch ops release the GIL) while batch i trains; waiting for it is data_s."""
        batches = iter(self.loader)

        def read(seed: int):
            batch = next(batches, None)  # in_process data sets draw nothing random here
            return None if batch is None else self._place(batch, seed)

        with ThreadPoolExecutor(1, thread_name_prefix="hpml-batches") as pool:  # one thread: reads in order
            pending = collections.deque(pool.submit(read, next(seeds)) for _ in range(self.host_depth))
            while (placed := pending.popleft().result()) is not None:
                pending.append(pool.submit(read, next(seeds)))
                yield placed

    def _ahead(self, seeds: Iterator[int]) -> Iterator:
        stream = torch.cuda.Stream(self.device) if self.cuda else None
        batches = self._host_ahead() if self._read_here() else iter(self.loader)

        def issue(batch):
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                placed = self._place(batch, next(seeds))
                ready = torch.cuda.Event() if stream is not None else None
                if ready is not None:
                    ready.record(stream)
            return placed, ready

        pending = None
        for batch in batches:
            issued = issue(batch)  # batch i+1 starts copying while batch i trains
            if pending is not None:
                yield self._hand_over(*pending)
            pending = issued
        if pending is not None:
            yield self._hand_over(*pending)

    def _read_here(self) -> bool:
        ds = self.loader.dataset  # (batches already made on the device need no helper thread)
        return getattr(ds, "in_process", False) and not getattr(ds, "on_device", False) and self.loader.num_workers == 0

    def _host_ahead(self) -> Iterator:
        """A data set read in this process (the cache's memory map): its batches are gathered and
        pinned on a helper thread, `host_depth` ahead. In the loop's own thread that gather would
        run while the GPU idles after each step's synchronize (trainer.timing=exact); here it
        overlaps the step, and the copy and the uint8 -> float transform stay on the device."""
        batches = iter(self.loader)

        def read():
            batch = next(batches, None)
            return None if batch is None else self._pinned(batch)

        with ThreadPoolExecutor(1, thread_name_prefix="hpml-pin") as pool:  # one thread: reads in order
            pending = collections.deque(pool.submit(read) for _ in range(self.host_depth))
            while (batch := pending.popleft().result()) is not None:
                pending.append(pool.submit(read))
                yield batch

    def _hand_over(self, placed, ready):
        if ready is not None:
            ready.synchronize()  # host waits for this batch only: counted as data_s
            current = torch.cuda.current_stream(self.device)
            for tensor in placed:  # made on the side stream, used on the compute stream
                tensor.record_stream(current)
        return placed


@contextlib.contextmanager
def one_thread():
    """Host batch transforms are a few memory-bound passes (~2 ms a batch): split over intra-op
    threads they wait at barriers for threads the OS gave to other work. On this shared 2-core
    machine one thread ran them 10-20x faster than two (README, "Data path")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
