"""What every data set shares: loader knobs, the registry, the loaders factory."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from torchvision.transforms import v2

from hpml_bench.data.augment import AugmentConfig, resolve_augment
from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

DATASETS: Registry = Registry("dataset")
# Other sources of a data set's splits, switched on by a config flag of the same name
# (cache.py registers "cache": `hpml prepare`'s arrays), so this module imports none of them.
SOURCES: Registry = Registry("data source")

WORKER_STARTS = ("auto", "fork", "forkserver", "spawn")
SAMPLERS = ("random", "balanced")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DatasetConfig:
    """Fields every data set has: what it holds and how it is loaded."""

    name: str = "???"  # the registered data set (set by the dataset=<choice> file)
    root: Optional[str] = None  # folder the data set is read from (on-disk sets; cifar10 downloads into it)
    num_classes: int = 10  # image labels
    mask_classes: int = 2  # per-pixel classes, for task=segmentation
    channels: int = 3  # image channels (3 RGB, 1 grey)
    # auto: native_size when the model accepts it, else the model's input size; or pixels.
    image_size: Any = "auto"
    native_size: int = 32  # the data set's own image side
    # Per-rank batch; the global batch is batch_size x world size.
    batch_size: int = 64
    val_batch_size: Optional[int] = None  # null: batch_size
    num_workers: int = 0  # DataLoader worker processes (0: load in the main process)
    pin_memory: bool = False  # page-locked host batches (faster copies to a GPU)
    persistent_workers: bool = False  # keep workers alive between epochs
    # How workers start: auto (the strategy's: forkserver when distributed, else fork),
    # fork, forkserver or spawn.
    worker_start: str = "auto"
    prefetch_factor: Optional[int] = None  # batches each worker loads ahead; null: PyTorch's default
    # Seconds a loader worker may take for one batch before the run stops (exit 5); 0 = wait forever.
    timeout_s: float = 0
    drop_last: bool = False  # drop the last incomplete training batch
    # The training split's random augmentations, in order: true (the data set's own: hflip; cifar10:
    # pad_crop, hflip), false, or a list of hflip, pad_crop, random_resized_crop, randaugment,
    # trivialaugment, autoaugment, augmix, random_erasing, mixup, cutmix (mixup and cutmix both: one per batch).
    augment: Any = True
    aug: AugmentConfig = field(default_factory=AugmentConfig)  # the augmentations' knobs
    # The training split's order: random (each sample once an epoch) | balanced (classes drawn
    # equally often, with replacement: for imbalanced labels; classification only).
    sampler: str = "random"

    # What `dataset.augment=true` means for this data set.
    default_augment: ClassVar[tuple] = ("hflip",)

    # What `hpml prepare` caches when no task= is given.
    default_task: ClassVar[str] = "classification"

    def __post_init__(self):
        if self.root and self.root.startswith("~"):  # dataset.root=~/data: no shell expands it after a dotted key
            self.root = os.path.expanduser(self.root)
        # auto: the data set's own size, until a model asks for another (input_size.py)
        self.size_is_auto = self.image_size in ("auto", None)
        if self.size_is_auto:
            self.image_size = self.native_size
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size <= 0:
            raise HpmlError(f"dataset.image_size={self.image_size}: use auto or a positive number of pixels")
        for knob in ("batch_size", "native_size", "num_classes", "channels"):
            if getattr(self, knob) <= 0:
                raise HpmlError(f"dataset.{knob}={getattr(self, knob)} must be positive")
        if self.num_workers < 0:
            raise HpmlError(f"dataset.num_workers={self.num_workers} must be 0 or more")
        if self.sampler not in SAMPLERS:
            raise HpmlError(f"dataset.sampler={self.sampler}: use one of {', '.join(SAMPLERS)}")
        self.augment = resolve_augment(self.augment, self.default_augment)
        if self.worker_start not in WORKER_STARTS:
            raise HpmlError(f"dataset.worker_start={self.worker_start}: use one of {', '.join(WORKER_STARTS)}")

    def eval_split(self, split: str) -> "DatasetConfig":
        """This config with `split` as its validation split (what `hpml eval split=` scores);
        HpmlError when the data set has no such split. Layouts with a test split override it."""
        if split == "val":
            return self
        raise HpmlError(f"split={split}: dataset {self.name} has no {split} split, only train and val; "
                        f"use split=val, or dataset.root=<another folder of the same layout>")

    def class_names(self, task: str) -> Optional[list[str]]:
        """The names of the classes (labels, or mask values for segmentation) where the data
        set has them; None: numbered (what predict, cam, export and eval show)."""
        return None


def normalize(channels: int) -> v2.Normalize:
    """ImageNet normalisation (grey images use the mean of its three channels)."""
    if channels == 3:
        return v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return v2.Normalize([sum(IMAGENET_MEAN) / 3] * channels, [sum(IMAGENET_STD) / 3] * channels)
