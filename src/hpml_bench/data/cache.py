"""`hpml prepare`: decode and resize every image once into a pre-serialized cache;
`dataset.cache=true` trains from it (random augmentation still drawn every epoch).

Layout of <cache_dir>/<dataset>-<task>/:
  train_images.npy, val_images.npy   uint8 [N, C, S, S] (read memory-mapped)
  train_targets.npy, val_targets.npy int64 labels [N] or uint8 masks [N, S, S]
  index.json                         the settings it was built with, counts, skipped files
The cache is written into a temporary folder that is renamed into place only when whole,
so an interrupted `hpml prepare` leaves nothing a later run would trust.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import tv_tensors

from hpml_bench.data.base import DATASETS
from hpml_bench.data.files import CorruptImage, FileDatasetConfig, FileImages, augment_transform, finish
from hpml_bench.errors import HpmlError

VERSION = 1
# Settings that do not change what the cache holds.
_RUNTIME_ONLY = {"batch_size", "val_batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
                 "drop_last", "augment", "random_crop_padding", "on_corrupt", "cache", "cache_dir"}


def cache_folder(cfg: FileDatasetConfig, task: str) -> Path:
    base = Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.root or ".") / ".hpml-cache"
    return base / f"{cfg.name}-{task}"


def cache_settings(cfg: FileDatasetConfig, task: str) -> dict[str, Any]:
    """What the cached tensors depend on; a run asking for anything else must not use them."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RUNTIME_ONLY}
    fields["root"] = str(Path(cfg.root).resolve()) if cfg.root else None
    return {"version": VERSION, "task": task, **fields}


class _Decoded(Dataset):
    """Decoded, fixed-transformed samples (uint8) with their index; None when unreadable."""

    def __init__(self, source: FileImages):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        try:
            image, target = self.source.decode(i)
        except CorruptImage as exc:
            if self.source.cfg.on_corrupt == "error":
                raise
            return i, None, None, str(exc.path)
        return i, image.as_subclass(torch.Tensor), target.as_subclass(torch.Tensor), None


def _write_split(source: FileImages, folder: Path, split: str, workers: int) -> dict[str, Any]:
    n, cfg = len(source), source.cfg
    seg = source.segmentation
    images = np.lib.format.open_memmap(folder / f"{split}_images.npy", mode="w+", dtype=np.uint8,
                                       shape=(n, cfg.channels, cfg.image_size, cfg.image_size))
    targets = np.zeros((n, cfg.image_size, cfg.image_size) if seg else (n,), dtype=np.uint8 if seg else np.int64)
    keep, skipped = np.ones(n, dtype=bool), []
    loader = DataLoader(_Decoded(source), batch_size=None, num_workers=workers)
    for i, image, target, bad in loader:  # workers decode in parallel; this process writes
        if bad is not None:
            keep[i] = False
            skipped.append(bad)
            continue
        images[i] = image.numpy()
        targets[i] = target.numpy()
    images.flush()
    if skipped:  # compact: rewrite without the holes
        np.save(folder / f"{split}_images.npy", np.asarray(images)[keep])
    np.save(folder / f"{split}_targets.npy", targets[keep])
    return {"count": int(keep.sum()), "skipped": skipped}


def prepare_cache(cfg: FileDatasetConfig, task: str) -> dict[str, Any]:
    """Build the cache for this data set and task; returns what index.json records."""
    if not isinstance(cfg, FileDatasetConfig):
        raise HpmlError(f"dataset={cfg.name} is generated in memory; `hpml prepare` is for data sets on disk")
    source_cfg = dataclasses.replace(cfg, cache=False)
    train, val = DATASETS.get(cfg.name)(source_cfg, task)
    final = cache_folder(cfg, task)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    try:
        splits = {split: _write_split(ds, tmp, split, cfg.num_workers) for split, ds in (("train", train), ("val", val))}
        index = {"settings": cache_settings(cfg, task), "splits": splits, "seconds": time.perf_counter() - start}
        (tmp / "index.json").write_text(json.dumps(index, indent=2))
        _swap_in(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace `final` by the whole `tmp` folder (the old cache is removed only after)."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


class CachedImages(Dataset):
    """A cache split, memory-mapped lazily (in each worker), augmented every epoch.

    The DataLoader fetches whole batches through `__getitems__`: one gather from the
    memory map and batched tensor ops, instead of per-sample transforms (that per-sample
    work, not the disk, is what remains of data time once decoding is gone)."""

    def __init__(self, folder: Path, split: str, cfg: FileDatasetConfig, task: str, train: bool):
        self.paths = folder / f"{split}_images.npy", folder / f"{split}_targets.npy"
        self.segmentation = task == "segmentation"
        self.flip = train and cfg.augment
        self.crop_padding = cfg.random_crop_padding if self.flip else 0
        self.per_sample = augment_transform(cfg, train)  # the decode path's transform, for __getitem__
        self.to_float = augment_transform(dataclasses.replace(cfg, augment=False), False)  # ToDtype + Normalize
        self.length = len(np.load(self.paths[1], mmap_mode="r"))
        self._arrays = None

    def __len__(self) -> int:
        return self.length

    def _open(self):
        if self._arrays is None:
            self._arrays = tuple(np.load(p, mmap_mode="r") for p in self.paths)
        return self._arrays

    def __getitem__(self, i: int):
        images, targets = self._open()
        image, target = torch.from_numpy(np.array(images[i])), torch.from_numpy(np.array(targets[i]))
        return finish(self.per_sample, image, target, self.segmentation)

    def __getitems__(self, indices: list[int]) -> "Batch":
        images, targets = self._open()
        order = np.argsort(indices)  # memory maps read fastest in file order
        picked = np.asarray(indices)[order]
        image = torch.from_numpy(images[picked])[np.argsort(order)]
        target = torch.from_numpy(targets[picked])[np.argsort(order)]
        if self.crop_padding:  # rare (CIFAR-style): per sample
            return Batch(default_collate([self[i] for i in indices]))
        if self.flip:  # each sample its own coin, image and mask alike
            flip = torch.rand(len(indices)) < 0.5
            image[flip] = image[flip].flip(-1)
            if self.segmentation:
                target[flip] = target[flip].flip(-1)
        image = self.to_float(tv_tensors.Image(image)).as_subclass(torch.Tensor)
        target = target.long() if self.segmentation else target
        return Batch((image, target))


class Batch(tuple):
    """A batch already stacked by `__getitems__`; `batch_collate` passes it through."""


def batch_collate(data):
    return tuple(data) if isinstance(data, Batch) else default_collate(data)


def load_cache(cfg: FileDatasetConfig, task: str) -> tuple[CachedImages, CachedImages]:
    folder = cache_folder(cfg, task)
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise HpmlError(f"dataset.cache=true but there is no cache at {folder}; build it with "
                        f"`hpml prepare dataset={cfg.name} dataset.root={cfg.root}` (same dataset overrides)")
    built = json.loads(index_file.read_text())["settings"]
    wanted = cache_settings(cfg, task)
    differ = [f"{k}={built.get(k)!r} (run asks {v!r})" for k, v in wanted.items() if built.get(k) != v]
    if differ:
        raise HpmlError(f"the cache at {folder} was built with other settings: {'; '.join(differ)}; "
                        f"run `hpml prepare` again with this run's dataset overrides, or set dataset.cache=false")
    return (CachedImages(folder, "train", cfg, task, train=True), CachedImages(folder, "val", cfg, task, train=False))
