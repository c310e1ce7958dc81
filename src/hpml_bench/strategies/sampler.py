"""Samplers of the training split: resumable part-way through an epoch, and class-balanced."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset, DistributedSampler

from hpml_bench.data.sample_rng import SampleKey, sample_seed


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


class BalancedSampler(ResumableSampler):
    """dataset.sampler=balanced: every class drawn equally often, with replacement (each sample
    weighs 1 / its class's count, as WeightedRandomSampler would be used), under DDP too.

    One draw of the epoch's len(dataset) (rounded up to the ranks) indices from the seed and the
    epoch, the same on every rank; each rank takes every world-size-th of them, as
    DistributedSampler shards its permutation. So the ranks together see the one-process draw,
    and a resumed epoch (start_index) the same indices as an uninterrupted one.
    """

    def __init__(self, dataset: Dataset, labels: torch.Tensor, **kwargs):
        super().__init__(dataset, **kwargs)
        counts = torch.bincount(labels)
        self.weights = (1.0 / counts.double().clamp(min=1))[labels]

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.total_size, replacement=True, generator=generator).tolist()
        positions = range(self.rank, self.total_size, self.num_replicas)[self.start_index:]
        # A sample drawn twice in an epoch gets two augmentations: its key's seed is that of its
        # place in the epoch's draw (still a function of seed, epoch and position: repeatable
        # across workers and a mid-epoch resume).
        return (SampleKey(drawn[p], sample_seed(self.seed, self.epoch, p), self.epoch) for p in positions)
