"""`hpml prepare`: decode and resize every image once into a pre-serialized cache;
`dataset.cache=true` trains from it (random augmentation still drawn every epoch, from each
sample's seed, epoch and index, as on the decode path).

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
from torch.utils.data import DataLoader, Dataset

from hpml_bench.data.base import DATASETS, SOURCES
from hpml_bench.data.batch_transforms import BatchAugment
from hpml_bench.data.cache_check import check_files, file_records
from hpml_bench.data.collate import Batch
from hpml_bench.data.files import CorruptImage, FileDatasetConfig, FileImages
from hpml_bench.data.sample_augment import SampleAugment
from hpml_bench.data.sample_rng import seed_of, seeds_of
from hpml_bench.errors import HpmlError

VERSION = 1
# Settings that do not change what the cache holds.
_RUNTIME_ONLY = {"batch_size", "val_batch_size", "num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
                 "drop_last", "augment", "aug", "on_corrupt", "cache", "cache_dir", "decode"}


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
        files = file_records(tmp, sorted(p.name for p in tmp.glob("*.npy")))  # checked when a run loads it
        index = {"settings": cache_settings(cfg, task), "splits": splits, "files": files,
                 "seconds": time.perf_counter() - start}
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

    The DataLoader fetches whole batches through `__getitems__`: one gather from the memory
    map, handed out as uint8 (a quarter of float32's bytes through the worker queues and over
    the bus) with the samples' seeds. `batch_transform` (flips, float conversion, normalisation,
    the float-stage ops) runs on the batch after the transfer: on the GPU, or in the main process
    on CPU (the strategy's device loader). Other uint8-stage ops (crops, RandAugment, ...) run per
    sample here, still uint8, in the loader."""

    def __init__(self, folder: Path, split: str, cfg: FileDatasetConfig, task: str, train: bool):
        self.paths = folder / f"{split}_images.npy", folder / f"{split}_targets.npy"
        self.segmentation = task == "segmentation"
        self.augment = SampleAugment(cfg, self.segmentation, train)  # the decode path's, for __getitem__ too
        self.batch_transform = BatchAugment(self.augment)
        self.length = len(np.load(self.paths[1], mmap_mode="r"))
        self._arrays = None

    # Workers kept across epochs (when there are any, see `in_process`): restarting them every
    # epoch (fork, first batch: ~0.3 s on the shared 2-core machine) would be most of data_s.
    persistent_workers = True

    @property
    def in_process(self) -> bool:
        """Read batches in the main process, whatever dataset.num_workers says: a batch's gather
        from the memory map takes ~0.15 ms (128 images of 64x64), handing it from a worker
        process through shared memory ~2 ms (README, "Data path"). Per-sample ops (anything but
        a lone flip) are work enough to be worth worker processes; they also draw from the
        global RNG, which the device loader's look-ahead thread must not touch (sample_rng.py)."""
        return not self.augment.per_sample

    def __len__(self) -> int:
        return self.length

    @property
    def targets(self) -> np.ndarray:
        """Every sample's target (class labels: what loss.class_weights=auto and the balanced sampler count)."""
        return np.asarray(self._open()[1])

    def _open(self):
        if self._arrays is None:
            self._arrays = tuple(np.load(p, mmap_mode="r") for p in self.paths)
        return self._arrays

    def __getitem__(self, i: int):
        """One float sample through the decode path's per-sample augmentation (the reference)."""
        images, targets = self._open()
        image, target = torch.from_numpy(np.array(images[i])), torch.from_numpy(np.array(targets[i]))
        return self.augment(image, target, seed_of(i))

    def __getitems__(self, indices: list[int]) -> Batch:
        """uint8 images [B, C, S, S], targets and (from hpml's sampler) the samples' seeds, read
        in file order (memory maps read fastest so)."""
        images, targets = self._open()
        order = np.argsort(indices)
        picked = np.asarray(indices)[order]
        back = np.argsort(order)  # numpy, one thread: the gather is memory-bound and small
        image = torch.from_numpy(images[picked][back])
        target = torch.from_numpy(targets[picked][back])
        seeds = seeds_of(indices)
        image, target = self.augment.uint8_batch(image, target, seeds)  # per sample, when any
        return Batch((image, target) if seeds is None else (image, target, seeds))


@SOURCES.register("cache")
def load_cache(cfg: FileDatasetConfig, task: str) -> tuple[CachedImages, CachedImages]:
    folder = cache_folder(cfg, task)
    index_file = folder / "index.json"
    if not index_file.is_file():
        raise HpmlError(f"dataset.cache=true but there is no cache at {folder}; build it with "
                        f"`hpml prepare dataset={cfg.name} dataset.root={cfg.root}` (same dataset overrides)")
    index = json.loads(index_file.read_text())
    built = index["settings"]
    wanted = cache_settings(cfg, task)
    differ = [f"{k}={built.get(k)!r} (run asks {v!r})" for k, v in wanted.items() if built.get(k) != v]
    if differ:
        raise HpmlError(f"the cache at {folder} was built with other settings: {'; '.join(differ)}; "
                        f"run `hpml prepare` again with this run's dataset overrides, or set dataset.cache=false")
    check_files(folder, index.get("files", {}), f"re-run `hpml prepare dataset={cfg.name} dataset.root={cfg.root}`")
    return (CachedImages(folder, "train", cfg, task, train=True), CachedImages(folder, "val", cfg, task, train=False))
