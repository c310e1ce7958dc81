"""The device-side input pipeline: a loader wrapper that hands the trainer batches already
on the strategy's device and transformed there.

On a GPU: uint8 batches are pinned, copied without blocking on a side CUDA stream, and
augmented/normalised on that stream (the data set's batch_transform), one batch ahead, so the
copy and the transform of batch i+1 overlap the training of batch i. Handing a batch over, the
host waits for that batch's event: the loop's data_s stays the time spent waiting for a ready
batch. On CPU the same steps run in the main process, in order (no look-ahead needed).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class DeviceLoader:
    """Iterates a DataLoader's (inputs, targets) batches on `device`, transformed by `transform`.

    Anything else (sampler, dataset, num_workers, len) is the wrapped loader's. `prefetch`
    (default: on CUDA) runs the one-batch look-ahead; on CPU it only reorders host work, which
    the tests use to check that the look-ahead hands out the same batches."""

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
        if not self.prefetch:
            return map(self._place, self.loader)
        return self._ahead()

    def _place(self, batch):
        """Copy to the device (non-blocking from pinned memory), then transform there."""
        inputs, targets = batch
        if self.cuda:
            inputs, targets = (t if t.is_pinned() else t.pin_memory() for t in (inputs, targets))
        inputs = inputs.to(self.device, non_blocking=self.cuda)
        targets = targets.to(self.device, non_blocking=self.cuda)
        if self.transform is None:
            return inputs, targets
        with contextlib.nullcontext() if self.cuda else one_thread():
            return self.transform(inputs, targets)

    def _ahead(self) -> Iterator:
        stream = torch.cuda.Stream(self.device) if self.cuda else None
        batches = iter(self.loader)

        def issue(batch):
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                placed = self._place(batch)
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
