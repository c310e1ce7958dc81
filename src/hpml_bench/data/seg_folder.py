"""`seg_folder`: the common segmentation layout, for a user's own images and masks.

    root/train/images/<stem>.<ext>  + root/train/masks/<stem><mask_suffix>.<ext>
    root/val/...  (+ root/test/...)     or: root/images/ + root/masks/ (a seeded val_fraction split)
    root/classes.txt                    optional: the name of class k on line k + 1

Masks hold class indices (value k is class k; a palette PNG by its palette index; without
classes.txt or dataset.mask_classes the count is read from the masks), or are
0/255 binary masks (two classes), or hold colours (or grey levels) that `dataset.mask_values`
maps to classes, class k being the k-th value. Images go through the decode path every
on-disk data set shares (files.py), `hpml prepare`'s cache and the input-size rules.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, List, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.datasets.folder import IMG_EXTENSIONS

from hpml_bench.data.base import DATASETS
from hpml_bench.data.files import (
    CorruptImage,
    FileDatasetConfig,
    FileImages,
    Sample,
    require_root,
    seeded_split,
)
from hpml_bench.errors import HpmlError

SOURCE = "your own data (datasets/README.md, seg_folder, shows the layout)"
EXPECTED = "train/images/ + train/masks/ (+ val/, test/), or images/ + masks/"
MASK_EXTENSIONS = (*IMG_EXTENSIONS, ".gif")  # Carvana-style GIF masks
# Side assumed when the images cannot be looked at yet (no root): the build then names the problem.
FALLBACK_SIZE = 256


@dataclass
class SegFolderConfig(FileDatasetConfig):
    name: str = "seg_folder"
    # per-pixel classes; null: the lines of classes.txt, else len(mask_values), else read from the masks
    mask_classes: Optional[int] = None
    # 0: the shorter side of the first training image (looked up when the config is built)
    native_size: int = 0
    # the folder of images inside root (or inside each split folder)
    images_dir: str = "images"
    # the folder of masks beside images_dir; a mask has its image's stem (+ mask_suffix)
    masks_dir: str = "masks"
    # a mask's name is <image stem><mask_suffix>.<any image extension>, e.g. "_mask"
    mask_suffix: str = ""
    # the training split's folder (when root has no images_dir of its own)
    train_dir: str = "train"
    # the validation split's folder; null or missing: a seeded val_fraction split of train_dir
    val_dir: Optional[str] = "val"
    # the test split's folder, scored by `hpml eval split=test`
    test_dir: Optional[str] = "test"
    # class k's mask colour [r, g, b] (or grey level) at index k; null: masks hold class indices or 0/255
    mask_values: Optional[List[Any]] = None
    # class names, one a line, in root (absent: numbered)
    classes_file: str = "classes.txt"

    default_task: ClassVar[str] = "segmentation"

    def __post_init__(self):
        names = self.class_names("segmentation")
        counts = {"mask_values": len(self.mask_values) if self.mask_values else None,
                  self.classes_file: len(names) if names else None}
        if self.mask_classes is None:
            self.mask_classes = next((n for n in counts.values() if n), None) or inferred_mask_classes(self) or 2
        for source, n in counts.items():
            if n and n != self.mask_classes:
                raise HpmlError(f"dataset {self.name}: {source} gives {n} classes but dataset.mask_classes="
                                f"{self.mask_classes}; make them agree (or drop dataset.mask_classes)")
        if not 2 <= self.mask_classes <= 255:  # masks are uint8 class maps (and cached as such)
            raise HpmlError(f"dataset.mask_classes={self.mask_classes}: use 2 to 255 classes")
        if not self.native_size:
            self.native_size = first_image_side(self) or FALLBACK_SIZE
        super().__post_init__()
        MaskReader(self)  # a malformed mask_values fails now, not in the first batch

    def class_names(self, task: str) -> Optional[list[str]]:
        file = Path(self.root or "") / self.classes_file
        if not (self.root and file.is_file()):
            return None
        return [line.strip() for line in file.read_text().splitlines() if line.strip()] or None

    def eval_split(self, split: str) -> "SegFolderConfig":
        folder = Path(self.root or "") / str(getattr(self, f"{split}_dir", None) or "")
        if split == "test" and self.test_dir and (folder / self.images_dir).is_dir():
            return dataclasses.replace(self, val_dir=self.test_dir)
        if split == "test":
            raise HpmlError(f"split=test: {folder} has no {self.images_dir}/ folder (dataset.test_dir={self.test_dir}); "
                            f"use split=val, or give dataset.root=<a folder with {self.test_dir}/{self.images_dir}/>")
        return super().eval_split(split)


_INFERRED: dict[tuple, int] = {}  # the config is built several times per run: scan the masks once


def inferred_mask_classes(cfg: SegFolderConfig) -> Optional[int]:
    """The number of classes the index masks hold (largest value + 1; 0/255 masks: 2), read
    from every mask of the training and validation folders, said once on stderr; None when
    the folders are not there yet (the build then names what is missing)."""
    folders = [folder for folder in mask_folders(cfg) if folder.is_dir()]
    if not folders:
        return None
    key = (cfg.mask_suffix, *(str(f.resolve()) for f in folders))
    if key not in _INFERRED:
        masks = [path for folder in folders for path in _by_stem(folder, MASK_EXTENSIONS, cfg.mask_suffix).values()]
        values = set()
        for path in masks:
            try:
                with Image.open(path) as img:
                    values.update(np.unique(_single_channel(img, path)).tolist())
            except (OSError, UnidentifiedImageError):
                continue  # the decode path names the file when it reads it
        if not values:
            return None
        binary = values <= {0, 255}
        top = max(values)
        if top > 254 and not binary:
            raise HpmlError(f"the masks in {folders[0]} hold value {top}: too many classes for index masks (at most "
                            f"255); map them with dataset.mask_values or set dataset.mask_classes")
        _INFERRED[key] = 2 if binary else max(top + 1, 2)
        if os.environ.get("RANK", "0") == "0":  # one line per job, not one per rank
            held = "only 0 and 255: binary masks" if binary else f"values up to {top}"
            print(f"note: dataset.mask_classes={_INFERRED[key]}: read from {len(masks)} masks in "
                  f"{', '.join(map(str, folders))} ({held}); set dataset.mask_classes (or write classes.txt) to "
                  f"say otherwise", file=sys.stderr)
    return _INFERRED[key]


def mask_folders(cfg: SegFolderConfig) -> list[Path]:
    """The masks folders of the training and validation splits (or the one flat folder)."""
    root = Path(cfg.root or "")
    if not cfg.root:
        return []
    if (root / cfg.train_dir / cfg.images_dir).is_dir():
        return [root / split / cfg.masks_dir for split in (cfg.train_dir, cfg.val_dir) if split]
    return [root / cfg.masks_dir]


def first_image_side(cfg: SegFolderConfig) -> Optional[int]:
    """The shorter side of the first image (by name) of the training folder; None if none."""
    root = Path(cfg.root or "")
    for folder in (root / cfg.train_dir / cfg.images_dir, root / cfg.images_dir):
        if cfg.root and folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
            if files:
                try:
                    with Image.open(files[0]) as img:  # reads the header only
                        return min(img.size)
                except (OSError, UnidentifiedImageError):
                    return None  # the decode path names the file when it reads it
    return None


class MaskReader:
    """path -> uint8 class map [H, W], by the data set's mask convention; HpmlError naming the
    file and the value for a value that is not one of the classes. Picklable (loader workers)."""

    def __init__(self, cfg: SegFolderConfig):
        self.classes, self.name = cfg.mask_classes, cfg.name
        values = cfg.mask_values
        self.colour = bool(values) and not isinstance(values[0], (int, float))  # [r, g, b] lists, else grey levels
        self.lut = None
        if values:
            try:
                codes = [_code(v) if self.colour else int(v) for v in values]
            except (TypeError, ValueError):
                raise HpmlError(f"dataset.mask_values={list(values)}: give one grey level (0-255) or one "
                                f"[r, g, b] per class, class k at index k") from None
            if len(set(codes)) != len(codes) or not all(0 <= c < (1 << 24 if self.colour else 256) for c in codes):
                raise HpmlError(f"dataset.mask_values={list(values)}: values must be distinct grey levels "
                                f"(0-255) or [r, g, b] colours")
            self.codes = np.asarray(codes, dtype=np.int64)
            if not self.colour:
                self.lut = np.full(256, -1, dtype=np.int16)
                self.lut[self.codes] = np.arange(len(codes))

    def __call__(self, path: Path) -> torch.Tensor:
        try:
            with Image.open(path) as img:
                if self.colour:
                    classes = self._from_colours(np.asarray(img.convert("RGB")), path)
                elif self.lut is not None:
                    classes = self._from_grey(np.asarray(img.convert("L")), path)
                else:
                    classes = self._from_indices(_single_channel(img, path), path)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            error = CorruptImage(f"cannot read mask {path} ({type(exc).__name__}); fix or remove it")
            error.path = path
            raise error from exc
        return torch.from_numpy(classes.astype(np.uint8))

    def _from_indices(self, array: np.ndarray, path: Path) -> np.ndarray:
        if self.classes == 2 and array.max(initial=0) == 255:  # a 0/255 binary mask
            array = np.where(array == 255, 1, array)
        bad = array >= self.classes
        if bad.any():
            raise HpmlError(f"mask {path} holds value {int(array[bad][0])}, outside classes 0..{self.classes - 1} "
                            f"of dataset {self.name}; fix the mask, set dataset.mask_classes, "
                            f"or map its values with dataset.mask_values")
        return array

    def _from_grey(self, array: np.ndarray, path: Path) -> np.ndarray:
        classes = self.lut[array]
        if (classes < 0).any():
            value = int(array[classes < 0][0])
            raise HpmlError(f"mask {path} holds grey level {value}, which dataset.mask_values "
                            f"{self.codes.tolist()} does not list; add it or fix the mask")
        return classes

    def _from_colours(self, array: np.ndarray, path: Path) -> np.ndarray:
        codes = (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
        order = np.argsort(self.codes)
        where = np.searchsorted(self.codes[order], codes).clip(0, len(order) - 1)
        found = self.codes[order][where] == codes
        if not found.all():
            r, g, b = (int(c) for c in array[~found][0])
            raise HpmlError(f"mask {path} holds colour [{r}, {g}, {b}], which dataset.mask_values does not list; "
                            f"add it (as class k at index k) or fix the mask")
        return order[where]


def _code(colour) -> int:
    r, g, b = (int(c) for c in colour)
    if not all(0 <= c <= 255 for c in (r, g, b)):
        raise ValueError(colour)
    return (r << 16) | (g << 8) | b


def _single_channel(img: Image.Image, path: Path) -> np.ndarray:
    """Class indices of an index mask: a palette PNG's indices, a grey mask's values, or an
    RGB mask whose three channels agree."""
    array = np.asarray(img)
    if array.ndim == 3:
        if not (array[..., :1] == array[..., 1:3]).all():
            raise HpmlError(f"mask {path} is a colour image; map its colours to classes with "
                            f"dataset.mask_values=[[r,g,b], ...] (class k at index k)")
        array = array[..., 0]
    return array.astype(np.int64)


def folder_samples(split: Path, cfg: SegFolderConfig) -> list[Sample]:
    """The (image, mask) pairs of one split folder, by image name; HpmlError for an image
    without a mask (or a mask without an image)."""
    images_dir, masks_dir = split / cfg.images_dir, split / cfg.masks_dir
    if not masks_dir.is_dir():
        raise HpmlError(f"{images_dir} has no {cfg.masks_dir}/ folder beside it; put each image's mask "
                        f"in {masks_dir} (same stem{f' + {cfg.mask_suffix}' if cfg.mask_suffix else ''})")
    images = _by_stem(images_dir, IMG_EXTENSIONS, "")
    masks = _by_stem(masks_dir, MASK_EXTENSIONS, cfg.mask_suffix)
    for stem in sorted(images.keys() - masks.keys()):
        raise HpmlError(f"image {images[stem]} has no mask {masks_dir / (stem + cfg.mask_suffix)}.png (any image "
                        f"extension); add it or remove the image")
    for stem in sorted(masks.keys() - images.keys()):
        raise HpmlError(f"mask {masks[stem]} has no image {stem}.* in {images_dir}; add it or remove the mask")
    return [Sample(images[s], mask=masks[s]) for s in sorted(images)]


def _by_stem(folder: Path, extensions, suffix: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in extensions or not path.stem.endswith(suffix):
            continue
        stem = path.stem[: len(path.stem) - len(suffix)]
        if stem in found:
            raise HpmlError(f"{found[stem]} and {path} have the same name; keep one file per stem in {folder}")
        found[stem] = path
    return found


@DATASETS.register("seg_folder", config=SegFolderConfig)
def build_seg_folder(cfg: SegFolderConfig, task: str):
    if task != "segmentation":
        raise HpmlError("dataset=seg_folder has masks: use task=segmentation with a segmentation model (unet, fcn, segnet)")
    root = require_root(cfg, EXPECTED, SOURCE)
    if (root / cfg.train_dir / cfg.images_dir).is_dir():
        train = folder_samples(root / cfg.train_dir, cfg)
        if cfg.val_dir and (root / cfg.val_dir / cfg.images_dir).is_dir():
            val = folder_samples(root / cfg.val_dir, cfg)
        else:
            train, val = seeded_split(train, cfg.val_fraction, cfg.split_seed)
    elif (root / cfg.images_dir).is_dir():
        train, val = seeded_split(folder_samples(root, cfg), cfg.val_fraction, cfg.split_seed)
    else:
        raise HpmlError(f"dataset.root={root} has neither {cfg.train_dir}/{cfg.images_dir}/ nor {cfg.images_dir}/; "
                        f"expected {EXPECTED}")
    reader = MaskReader(cfg)
    return (FileImages(train, cfg, task, train=True, mask_reader=reader),
            FileImages(val, cfg, task, train=False, mask_reader=reader))
