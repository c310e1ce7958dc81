"""How loaders stack samples: batches a data set already stacked, and skipping unreadable ones."""
from __future__ import annotations

from torch.utils.data import default_collate


class Batch(tuple):
    """A batch already stacked by a data set's `__getitems__`; `batch_collate` passes it through."""


def batch_collate(data):
    return tuple(data) if isinstance(data, Batch) else default_collate(data)


def skip_none_collate(batch):
    """default_collate over the samples that could be read."""
    return default_collate([b for b in batch if b is not None])
