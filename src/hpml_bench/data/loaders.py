"""The data sets of a config, and the loaders that read them (the strategy supplies the
samplers and the device loader; evaluation reads one split in order, outside any strategy)."""
from __future__ import annotations

import multiprocessing
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from hpml_bench.data.base import DATASETS, SOURCES, DatasetConfig
from hpml_bench.data.collate import batch_collate, skip_none_collate
from hpml_bench.data.device_loader import DeviceLoader
from hpml_bench.data.gpu_decode import device_decoded
from hpml_bench.data.labels import class_labels
from hpml_bench.data.sample_augment import check_augment, with_batch_mix
from hpml_bench.errors import HpmlError


def build_datasets(cfg: DatasetConfig, task: str) -> tuple[Dataset, Dataset]:
    """(train, validation) data sets for `task` ('classification' or 'segmentation'); the
    training set's batch transform ends with dataset.augment's batch stage (MixUp/CutMix)."""
    check_augment(cfg, task)  # before reading anything: augmentations the task's masks cannot take
    source = next((SOURCES.get(flag) for flag in SOURCES.names() if getattr(cfg, flag, False)), None)
    train, val = (source or DATASETS.get(cfg.name))(cfg, task)
    if getattr(cfg, "decode", "cpu") == "gpu":  # files read by the loader, decoded on the device
        train, val = device_decoded(train, task), device_decoded(val, task)
    for split, ds in (("train", train), ("validation", val)):
        if len(ds) == 0:
            raise HpmlError(f"dataset {cfg.name}: the {split} split is empty; check dataset.root={cfg.root}")
    return with_batch_mix(train, cfg, task), val


def build_loaders(cfg: DatasetConfig, strategy, task: str, seed: int) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders; the strategy supplies the samplers (sharding, shuffling)."""
    train_ds, val_ds = build_datasets(cfg, task)
    for ds in (train_ds, val_ds):  # data sets that make their batches on the device (synthetic_on=device)
        if hasattr(ds, "place_on"):
            ds.place_on(strategy.device)
    full = strategy.needs_full_batches  # micro-batching needs every batch whole (drops the rest)
    sampler = strategy.sampler(train_ds, shuffle=True, seed=seed, balance_labels=_balance_labels(cfg, train_ds, task))
    # A last training batch of one sample breaks batch norm ("expected more than 1 value per channel").
    lone_last = len(sampler) > 1 and len(sampler) % cfg.batch_size == 1
    start = strategy.worker_start_method if cfg.worker_start == "auto" else cfg.worker_start
    train = _loader(cfg, train_ds, sampler, cfg.batch_size, cfg.drop_last or full or lone_last, start)
    val_batch = cfg.val_batch_size or cfg.batch_size
    val = _loader(cfg, val_ds, strategy.sampler(val_ds, shuffle=False, seed=seed), val_batch, full, start)
    # The strategy moves batches to its device (prefetching on a GPU) and runs the data
    # set's batch_transform there (uint8 -> float, augmentation; see batch_transforms.py).
    return strategy.device_loader(train), strategy.device_loader(val)


def _balance_labels(cfg: DatasetConfig, train_ds: Dataset, task: str) -> Optional[torch.Tensor]:
    """dataset.sampler=balanced: the labels the sampler balances (None: the random order)."""
    if cfg.sampler != "balanced":
        return None
    if task != "classification":
        raise HpmlError(f"dataset.sampler=balanced draws by image label; {task} has none (use dataset.sampler=random)")
    return class_labels(train_ds)


def eval_loader(cfg: DatasetConfig, ds: Dataset, device: torch.device = torch.device("cpu"),
                batch_size: Optional[int] = None):
    """One pass over `ds` in order, as validation reads it (the data set's collate and device
    batch transform included), outside any strategy: what export checks and `hpml eval` score."""
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
