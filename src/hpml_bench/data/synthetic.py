"""`synthetic`: random tensors of a configured shape, for pure-compute benchmarks."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from hpml_bench.data.base import DATASETS, DatasetConfig


@dataclass
class SyntheticConfig(DatasetConfig):
    name: str = "synthetic"
    num_classes: int = 10
    native_size: int = 64
    num_train: int = 1024  # random training tensors
    num_val: int = 256  # random validation tensors
    seed: int = 0  # the generator's seed


class RandomTensors(Dataset):
    """Already-normalised float images; targets are labels or per-pixel masks."""

    def __init__(self, n: int, cfg: SyntheticConfig, task: str, seed: int):
        gen = torch.Generator().manual_seed(seed)
        shape = (n, cfg.channels, cfg.image_size, cfg.image_size)
        self.images = torch.randn(shape, generator=gen)
        if task == "segmentation":
            self.targets = torch.randint(0, cfg.mask_classes, (n, cfg.image_size, cfg.image_size), generator=gen)
        else:
            self.targets = torch.randint(0, cfg.num_classes, (n,), generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.targets[i]


@DATASETS.register("synthetic", config=SyntheticConfig)
def build_synthetic(cfg: SyntheticConfig, task: str):
    return RandomTensors(cfg.num_train, cfg, task, cfg.seed), RandomTensors(cfg.num_val, cfg, task, cfg.seed + 1)
