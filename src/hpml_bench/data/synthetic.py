"""`synthetic`: random tensors of a configured shape, for pure-compute benchmarks.

synthetic_on=device (the default) makes the whole split on the training device once and
gathers each batch there: no loader worker, no host copy, as timm's benchmark and NVIDIA's
synthetic backend measure. synthetic_on=host keeps the tensors in host memory, handed out per
sample through the DataLoader (workers, pinning, copy), which measures that path too.
Either way a sample is the same function of (seed, index) on a CPU device, and the sampler
(sharding per rank, shuffling, a mid-epoch resume) picks the indices.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from hpml_bench.data.base import DATASETS, DatasetConfig
from hpml_bench.data.collate import Batch
from hpml_bench.errors import HpmlError

SYNTHETIC_ON = ("device", "host")


@dataclass
class SyntheticConfig(DatasetConfig):
    name: str = "synthetic"
    num_classes: int = 10
    native_size: int = 64
    num_train: int = 1024  # random training tensors
    num_val: int = 256  # random validation tensors
    seed: int = 0  # the generator's seed
    # device: batches made and gathered on the training device (no loader, no copy); host: in host memory, through the DataLoader
    synthetic_on: str = "device"

    def __post_init__(self):
        super().__post_init__()
        if self.synthetic_on not in SYNTHETIC_ON:
            raise HpmlError(f"dataset.synthetic_on={self.synthetic_on}: use device or host")


class RandomTensors(Dataset):
    """Already-normalised float images; targets are labels or per-pixel masks.

    Made lazily, on the first read, on `device` (cpu until build_loaders calls place_on)."""

    def __init__(self, n: int, cfg: SyntheticConfig, task: str, seed: int):
        self.n, self.seed, self.task = n, seed, task
        self.size, self.channels = cfg.image_size, cfg.channels
        self.classes = cfg.mask_classes if task == "segmentation" else cfg.num_classes
        self.on_device = cfg.synthetic_on == "device"
        self.device = torch.device("cpu")
        self._tensors = None
        if not self.on_device:  # made here, as before: forked loader workers then share them
            self._make()

    @property
    def in_process(self) -> bool:
        """On the device, batches are gathered in this process (workers could not touch them)."""
        return self.on_device

    def place_on(self, device: torch.device) -> None:
        """Where synthetic_on=device makes its tensors (build_loaders: the strategy's device)."""
        if self.on_device and torch.device(device) != self.device:
            self.device, self._tensors = torch.device(device), None

    def _make(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._tensors is None:
            gen = torch.Generator(self.device).manual_seed(self.seed)
            images = torch.randn((self.n, self.channels, self.size, self.size), generator=gen, device=self.device)
            target_shape = (self.n, self.size, self.size) if self.task == "segmentation" else (self.n,)
            targets = torch.randint(0, self.classes, target_shape, generator=gen, device=self.device)
            self._tensors = images, targets
        return self._tensors

    @property
    def images(self) -> torch.Tensor:
        return self._make()[0]

    @property
    def targets(self) -> torch.Tensor:
        return self._make()[1]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        images, targets = self._make()
        return images[i], targets[i]

    def __getitems__(self, indices: list[int]):
        """A batch: on the device, one gather there; on the host, the samples as before
        (the DataLoader's default_collate stacks them)."""
        if not self.on_device:
            return [self[i] for i in indices]
        images, targets = self._make()
        index = torch.as_tensor(indices, device=self.device)
        return Batch((images.index_select(0, index), targets.index_select(0, index)))


@DATASETS.register("synthetic", config=SyntheticConfig)
def build_synthetic(cfg: SyntheticConfig, task: str):
    return RandomTensors(cfg.num_train, cfg, task, cfg.seed), RandomTensors(cfg.num_val, cfg, task, cfg.seed + 1)
