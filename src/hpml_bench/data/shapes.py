"""`shapes`: the embedded default data set, generated from a seed (no download).

Small RGB images, each holding one shape (circle, square, triangle, cross) of random
colour, position and size on a noisy background. The label is the shape's class; the
mask marks the shape's pixels (1) against the background (0) for segmentation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from hpml_bench.data.base import DATASETS, DatasetConfig
from hpml_bench.data.sample_augment import SampleAugment
from hpml_bench.data.sample_rng import seed_of

SHAPES = ("circle", "square", "triangle", "cross")


@dataclass
class ShapesConfig(DatasetConfig):
    name: str = "shapes"
    num_classes: int = len(SHAPES)
    native_size: int = 32
    num_train: int = 1600  # training images generated
    num_val: int = 400  # validation images generated
    noise_std: float = 0.08  # Gaussian pixel noise added to each image
    seed: int = 1234  # the generator's seed (same seed, same images)

    def class_names(self, task: str):
        return list(SHAPES) if task == "classification" else None


def generate_shapes(n: int, size: int, noise_std: float, seed: int):
    """(images uint8 [n,3,size,size], labels int64 [n], masks uint8 [n,size,size])."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(SHAPES), n)
    radius = rng.uniform(0.18, 0.34, n) * size
    centre = rng.uniform(0, 1, (n, 2)) * (size - 2 * radius[:, None]) + radius[:, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy = yy[None] - centre[:, 0, None, None]
    dx = xx[None] - centre[:, 1, None, None]
    r = radius[:, None, None]
    inside = np.stack([
        dx**2 + dy**2 <= r**2,                                                    # circle
        np.maximum(abs(dx), abs(dy)) <= 0.8 * r,                                  # square
        (dy >= -r) & (dy <= 0.7 * r) & (abs(dx) <= 0.6 * (dy + r)),               # triangle
        ((abs(dx) <= r / 3) & (abs(dy) <= r)) | ((abs(dy) <= r / 3) & (abs(dx) <= r)),  # cross
    ])[labels, np.arange(n)]
    background = rng.uniform(0.0, 0.45, (n, 3, 1, 1))
    foreground = rng.uniform(0.55, 1.0, (n, 3, 1, 1))
    image = np.where(inside[:, None], foreground, background)
    image = image + rng.normal(0, noise_std, image.shape)
    images = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(inside.astype(np.uint8))


class TensorImages(Dataset):
    """Images (uint8 tensor) with labels or masks as targets, through a SampleAugment (the
    training split's per-sample augmentation on the sample's own seed, then float)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor | None,
                 task: str, transform: SampleAugment):
        self.images, self.labels, self.masks = images, labels, masks
        self.segmentation = task == "segmentation"
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        target = self.masks[i] if self.segmentation else self.labels[i]
        return self.transform(self.images[i], target, seed_of(i))  # i: a SampleKey when training


def image_transform(cfg: DatasetConfig, train: bool, task: str = "classification") -> SampleAugment:
    """uint8 image -> normalised float, after dataset.augment's per-sample ops when training."""
    return SampleAugment(cfg, task == "segmentation", train)


@DATASETS.register("shapes", config=ShapesConfig)
def build_shapes(cfg: ShapesConfig, task: str):
    # One draw for both splits, so that train and validation never share an image.
    images, labels, masks = generate_shapes(cfg.num_train + cfg.num_val, cfg.image_size, cfg.noise_std, cfg.seed)
    cut = cfg.num_train
    train = TensorImages(images[:cut], labels[:cut], masks[:cut], task, image_transform(cfg, True, task))
    val = TensorImages(images[cut:], labels[cut:], masks[cut:], task, image_transform(cfg, False, task))
    return train, val
