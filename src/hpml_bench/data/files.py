"""Images (and masks) read from files: the decode path every on-disk data set shares.

Each image goes: decode (torchvision.io for PNG/JPEG colour, else PIL) -> uint8 tensor -> `fixed` transforms (centre crop, resize;
what `hpml prepare` bakes into its cache) -> `augment` (dataset.augment's per-sample ops, drawn
from the sample's seed, epoch and index: sample_augment.py) -> float, normalised. Masks travel
with their image as tv_tensors.Mask (nearest-neighbour resize) and end as int64 class maps.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image, read_file
from torchvision.transforms import v2

from hpml_bench.data.base import DatasetConfig, normalize
from hpml_bench.data.sample_augment import SampleAugment
from hpml_bench.data.sample_rng import seed_of
from hpml_bench.errors import HpmlError


@dataclass
class FileDatasetConfig(DatasetConfig):
    """On-disk data sets: where they are, how they split, how images are prepared."""

    val_fraction: float = 0.1  # when the layout has no validation split of its own
    split_seed: int = 0  # seed of the val_fraction split
    center_crop: Optional[int] = None  # before resizing, in source pixels
    on_corrupt: str = "error"  # error | skip (skip counts and reports unreadable images)
    cache: bool = False  # train from `hpml prepare`'s pre-decoded cache
    cache_dir: Optional[str] = None  # default <root>/.hpml-cache
    # cpu: decode in the loader (workers); gpu: JPEG batches decoded, resized, augmented on the training device
    decode: str = "cpu"

    def __post_init__(self):
        super().__post_init__()
        if self.on_corrupt not in ("error", "skip"):
            raise HpmlError(f"dataset.on_corrupt={self.on_corrupt}: use error or skip")
        if self.decode not in ("cpu", "gpu"):
            raise HpmlError(f"dataset.decode={self.decode}: use cpu or gpu")
        if not 0 < self.val_fraction < 1:
            raise HpmlError(f"dataset.val_fraction={self.val_fraction} must be between 0 and 1")


@dataclass(frozen=True)
class Sample:
    image: Path
    label: int = -1
    mask: Optional[Path] = None


def fixed_transform(cfg: FileDatasetConfig) -> v2.Transform:
    """Deterministic steps (the cache stores their output)."""
    steps = [v2.CenterCrop(cfg.center_crop)] if cfg.center_crop else []
    return v2.Compose(steps + [v2.Resize((cfg.image_size, cfg.image_size), antialias=True)])


def float_transform(cfg: DatasetConfig) -> v2.Transform:
    """uint8 image -> float, normalised: what validation and export apply after `fixed`."""
    return v2.Compose([v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
                       normalize(cfg.channels)])


# torchvision.io (libpng / libjpeg-turbo straight into a tensor) decoded these 1.16x (PNG) and
# 1.6x (JPEG) faster than PIL here (README, "Data path"); PIL keeps TIFF and grey conversion
# (its luma weights, which torchvision's GRAY mode does not match exactly).
_TORCHVISION_DECODES = (".png", ".jpg", ".jpeg")


def read_image(path: Path, channels: int) -> torch.Tensor:
    """uint8 [C, H, W]; HpmlError naming the file when it cannot be decoded."""
    try:
        if channels == 3 and path.suffix.lower() in _TORCHVISION_DECODES:
            return decode_image(read_file(str(path)), mode=ImageReadMode.RGB)
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, RuntimeError) as exc:
        error = CorruptImage(f"cannot read image {path} ({type(exc).__name__}); fix or remove it, "
                             f"or set dataset.on_corrupt=skip")
        error.path = path
        raise error from exc
    return torch.from_numpy(array.copy()).reshape(array.shape[0], array.shape[1], -1).permute(2, 0, 1)


def read_mask(path: Path) -> torch.Tensor:
    """{0, 1} uint8 [H, W] from a 0/255 mask (any channel count)."""
    return (read_image(path, 1)[0] > 127).to(torch.uint8)


class CorruptImage(HpmlError):
    """An image that cannot be decoded (`.path` names it)."""

    path: Path


class FileImages(Dataset):
    """Samples decoded on the fly. With on_corrupt=skip an unreadable sample yields None
    (dropped by data.collate.skip_none_collate) and a warning naming the file."""

    def __init__(self, samples: Sequence[Sample], cfg: FileDatasetConfig, task: str, train: bool,
                 mask_reader: Optional[Callable[[Path], torch.Tensor]] = None):
        self.samples, self.cfg, self.train = list(samples), cfg, train
        # path -> uint8 class map [H, W]; a layout's own mask convention (seg_folder's), else 0/255
        self.read_mask = mask_reader or read_mask
        self.segmentation = task == "segmentation"
        self.fixed, self.augment = fixed_transform(cfg), SampleAugment(cfg, self.segmentation, train)

    def __len__(self) -> int:
        return len(self.samples)

    def decode(self, i: int):
        """(uint8 image after the fixed transforms, target) — what the cache stores."""
        s = self.samples[i]
        image = tv_tensors.Image(read_image(s.image, self.cfg.channels))
        if not self.segmentation:
            return self.fixed(image), torch.tensor(s.label)
        mask = self.read_mask(s.mask)
        if mask.shape != image.shape[-2:]:
            raise HpmlError(f"mask {s.mask} is {tuple(mask.shape)} but its image {s.image} is "
                            f"{tuple(image.shape[-2:])}; masks must match their images")
        return self.fixed(image, tv_tensors.Mask(mask))

    def __getitem__(self, i: int):
        try:
            image, target = self.decode(i)
        except CorruptImage as exc:
            if self.cfg.on_corrupt == "error":
                raise
            print(f"warning: skipping unreadable image {exc.path}", file=sys.stderr)
            return None
        # `i` is a SampleKey from the training sampler: the sample's own seed for this epoch
        return self.augment(image.as_subclass(torch.Tensor), target.as_subclass(torch.Tensor), seed_of(i))


def check_labels(samples: Sequence[Sample], num_classes: int, where: str) -> None:
    bad = next((s for s in samples if not 0 <= s.label < num_classes), None)
    if bad is not None:
        raise HpmlError(f"label {bad.label} of {bad.image} (in {where}) is outside [0, {num_classes}); "
                        f"fix the labels or set dataset.num_classes")


def seeded_split(groups: Sequence, val_fraction: float, seed: int) -> tuple[list, list]:
    """Shuffle `groups` with a seed and cut off val_fraction (at least one) for validation."""
    order = np.random.default_rng(seed).permutation(len(groups))
    n_val = max(1, int(round(len(groups) * val_fraction)))
    val = [groups[i] for i in sorted(order[:n_val])]
    train = [groups[i] for i in sorted(order[n_val:])]
    return train, val


def require_root(cfg: FileDatasetConfig, expected: str, source: str) -> Path:
    """The data set root, or an HpmlError saying which layout was expected and where to get it."""
    if not cfg.root:
        raise HpmlError(f"dataset={cfg.name} needs dataset.root=<folder holding {expected}>; get it from {source}")
    root = Path(cfg.root)
    if not root.is_dir():
        raise HpmlError(f"dataset.root={cfg.root} does not exist; expected {expected} there (from {source})")
    return root
