"""Per-sample randomness: every random draw of a sample's augmentation comes from
(seed, epoch, sample index), wherever the sample is made (the main process, a loader worker,
the device), so that a run is bitwise-repeatable whatever `dataset.num_workers` is and after a
mid-epoch resume.

The training sampler (strategies/sampler.py) hands out `SampleKey`s: the sample's index (an
int, so any data set can index with it) carrying the sampler's seed and epoch. A data set turns
the key into a 63-bit sample seed, and each augmentation op into its own seed (`op_seed`), so
that adding an op to `dataset.augment` does not change the draws of the others.

torchvision's v2 transforms draw from the global RNG and take no generator, so an op runs in
`forked(seed)`: torch.random.fork_rng saves the global generator(s), seeds them, and restores
them afterwards (the training loop's own stream, e.g. dropout, is untouched). The global
generator is shared by the threads of a process, so `forked` is used only in the loop's thread
and in loader worker processes, never on the device loader's look-ahead thread (cache.py keeps
such data sets out of it). Coins (the flip) and the batch draws (MixUp/CutMix) need no fork:
`uniform` hashes the seed, mix.py passes a generator.
"""
from __future__ import annotations

import contextlib
import zlib
from typing import Iterator, Optional

import numpy as np
import torch

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def mix64(x: int) -> int:
    """splitmix64's finaliser: a stable 64-bit hash of a 64-bit integer (Python's hash() is not
    a mixing function for ints, and nothing here may depend on PYTHONHASHSEED)."""
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def mix64_array(x: np.ndarray) -> np.ndarray:
    """mix64 over a uint64 array (numpy's unsigned arithmetic wraps, as the & _MASK above)."""
    x = x.astype(np.uint64) + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one sample's augmentation: 63 bits (it fits int64 tensors and manual_seed)."""
    return mix64(mix64(mix64(seed & _MASK) ^ (epoch & _MASK)) ^ (index & _MASK)) >> 1


def op_seed(seed: int, salt: int) -> int:
    """The seed of one op of a sample (salt: `salt_of` its name and place)."""
    return mix64(seed ^ salt) >> 1


def salt_of(name: str) -> int:
    """A stable 64-bit salt for an op's name (crc32 does not change between runs or machines)."""
    return mix64(zlib.crc32(name.encode()))


def uniform(seed: int) -> float:
    """A number in [0, 1) determined by `seed` (53 bits, as a double holds)."""
    return (mix64(seed) >> 11) * 2.0**-53


def uniform_array(seeds: np.ndarray) -> np.ndarray:
    """`uniform` of each seed, vectorised (the same numbers, one call per batch)."""
    return (mix64_array(seeds) >> np.uint64(11)).astype(np.float64) * 2.0**-53


class SampleKey(int):
    """A sample index that knows the sampler's seed and epoch (see the module docstring)."""

    def __new__(cls, index: int, seed: int, epoch: int):
        key = super().__new__(cls, index)
        key.seed, key.epoch = int(seed), int(epoch)
        return key

    def __reduce__(self):  # to loader workers through the index queue
        return SampleKey, (int(self), self.seed, self.epoch)

    def __repr__(self) -> str:
        return f"SampleKey({int(self)}, seed={self.seed}, epoch={self.epoch})"

    @property
    def rng_seed(self) -> int:
        return sample_seed(self.seed, self.epoch, int(self))


def seed_of(index) -> Optional[int]:
    """The sample seed of an index from hpml's sampler; None for a plain int (a loader built
    outside a run: the ops then draw from the global RNG, as torchvision's would)."""
    return index.rng_seed if isinstance(index, SampleKey) else None


def seeds_of(indices) -> Optional[torch.Tensor]:
    """int64 [B] sample seeds of a batch's indices, or None unless every index is a SampleKey."""
    seeds = [seed_of(i) for i in indices]
    return None if any(s is None for s in seeds) else torch.tensor(seeds, dtype=torch.int64)


@contextlib.contextmanager
def forked(seed: Optional[int], device: Optional[torch.device] = None) -> Iterator[None]:
    """Run the block on the global RNG seeded with `seed`, restoring it afterwards; with a CUDA
    `device`, its generator too (some ops draw there, e.g. AugMix's Dirichlet weights).
    Seed None: the block draws from the global RNG as it stands."""
    if seed is None:
        yield
        return
    cuda = device is not None and device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    # torch.manual_seed would seed every backend's generators (~300 us); these two are ~10 us.
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield
