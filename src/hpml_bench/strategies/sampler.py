"""A DistributedSampler that can start an epoch part-way through (a mid-epoch resume)."""
from __future__ import annotations

from torch.utils.data import DistributedSampler

from hpml_bench.data.sample_rng import SampleKey


class ResumableSampler(DistributedSampler):
    """Yields this rank's indices of the epoch from `start_index` on.

    The order is DistributedSampler's (seed + epoch), so skipping the first k x batch_size
    indices gives exactly the batches an uninterrupted epoch would still have read, without
    loading (and augmenting) the skipped ones.

    Each index is a SampleKey: the index (an int) carrying the seed and epoch, from which the
    data set draws that sample's augmentation (data/sample_rng.py), in whatever process loads it.
    """

    start_index = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return (SampleKey(i, self.seed, self.epoch) for i in indices[self.start_index:])

    def __len__(self) -> int:
        return self.num_samples - self.start_index
