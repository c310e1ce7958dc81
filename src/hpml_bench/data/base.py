"""What every data set shares: loader knobs, the registry, the loaders factory."""
from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from hpml_bench.data.collate import batch_collate, skip_none_collate
from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

DATASETS: Registry = Registry("dataset")
# Other sources of a data set's splits, switched on by a config flag of the same name
# (cache.py registers "cache": `hpml prepare`'s arrays), so this module imports none of them.
SOURCES: Registry = Registry("data source")

WORKER_STARTS = ("auto", "fork", "forkserver", "spawn")
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
    augment: bool = True  # random flips (and crops where set) on the training split

    # What `hpml prepare` caches when no task= is given.
    default_task: ClassVar[str] = "classification"

    def __post_init__(self):
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


def build_datasets(cfg: DatasetConfig, task: str) -> tuple[Dataset, Dataset]:
    """(train, validation) data sets for `task` ('classification' or 'segmentation')."""
    source = next((SOURCES.get(flag) for flag in SOURCES.names() if getattr(cfg, flag, False)), None)
    train, val = (source or DATASETS.get(cfg.name))(cfg, task)
    if getattr(cfg, "decode", "cpu") == "gpu":  # files read by the loader, decoded on the device
        from hpml_bench.data.gpu_decode import device_decoded

        train, val = device_decoded(train, task), device_decoded(val, task)
    for split, ds in (("train", train), ("validation", val)):
        if len(ds) == 0:
            raise HpmlError(f"dataset {cfg.name}: the {split} split is empty; check dataset.root={cfg.root}")
    return train, val


def build_loaders(cfg: DatasetConfig, strategy, task: str, seed: int) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders; the strategy supplies the samplers (sharding, shuffling)."""
    train_ds, val_ds = build_datasets(cfg, task)
    for ds in (train_ds, val_ds):  # data sets that make their batches on the device (synthetic_on=device)
        if hasattr(ds, "place_on"):
            ds.place_on(strategy.device)
    full = strategy.needs_full_batches  # micro-batching needs every batch whole (drops the rest)
    sampler = strategy.sampler(train_ds, shuffle=True, seed=seed)
    # A last training batch of one sample breaks batch norm ("expected more than 1 value per channel").
    lone_last = len(sampler) > 1 and len(sampler) % cfg.batch_size == 1
    start = strategy.worker_start_method if cfg.worker_start == "auto" else cfg.worker_start
    train = _loader(cfg, train_ds, sampler, cfg.batch_size, cfg.drop_last or full or lone_last, start)
    val_batch = cfg.val_batch_size or cfg.batch_size
    val = _loader(cfg, val_ds, strategy.sampler(val_ds, shuffle=False, seed=seed), val_batch, full, start)
    # The strategy moves batches to its device (prefetching on a GPU) and runs the data
    # set's batch_transform there (uint8 -> float, augmentation; see batch_transforms.py).
    return strategy.device_loader(train), strategy.device_loader(val)


def eval_loader(cfg: DatasetConfig, ds: Dataset, device: torch.device = torch.device("cpu"),
                batch_size: Optional[int] = None):
    """One pass over `ds` in order, as validation reads it (the data set's collate and device
    batch transform included), outside any strategy: what export checks and `hpml eval` score."""
    from hpml_bench.strategies.prefetch import DeviceLoader

    loader = _loader(cfg, ds, None, batch_size or cfg.val_batch_size or cfg.batch_size, False, None)
    return DeviceLoader(loader, device, getattr(ds, "batch_transform", None))


def _loader(cfg: DatasetConfig, ds: Dataset, sampler, batch_size: int, drop_last: bool,
            start: Optional[str] = None) -> DataLoader:
    # A data set that is cheaper to read here than to receive from a worker (the memory-mapped
    # cache) says so; dataset.num_workers then only matters to the decode path.
    workers = 0 if getattr(ds, "in_process", False) else cfg.num_workers
    skipping = getattr(cfg, "on_corrupt", "error") == "skip"
    collate = batch_collate if hasattr(ds, "__getitems__") else skip_none_collate if skipping else None
    return DataLoader(
        ds,
        collate_fn=collate,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=cfg.pin_memory and torch.cuda.is_available() and not getattr(ds, "on_device", False)
        and not getattr(ds, "decodes_on_device", False),
        persistent_workers=(cfg.persistent_workers or getattr(ds, "persistent_workers", False)) and workers > 0,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        multiprocessing_context=worker_context(start, ds) if workers > 0 else None,
        drop_last=drop_last,
        timeout=cfg.timeout_s if workers > 0 else 0,
    )


def worker_context(method: Optional[str], ds: Dataset):
    """The multiprocessing context loader workers start in (None: the platform default)."""
    if method is None:
        return None
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # Import torch and the data set's module once, in the server, instead of in every
        # worker; only the data set itself is then pickled to each worker. (Not `__main__`,
        # the default: that would be pytest or a user's script.)
        ctx.set_forkserver_preload(["torch", "torchvision", type(ds).__module__])
    return ctx
