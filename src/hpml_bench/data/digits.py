"""`digits`: scikit-learn's bundled handwritten digits (no download), upsampled.

1,797 grey 8x8 images of the digits 0-9 (UCI's optical recognition set, values 0-16), scaled
to uint8 and resized (bilinear) to dataset.image_size, 32 px by default. A fixed, stratified
split (dataset.split_seed) keeps num_train images for training, the rest for validation: a
small, real data set on which a recipe's levers can be measured in minutes on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torchvision.transforms import v2

from hpml_bench.data.base import DATASETS, DatasetConfig
from hpml_bench.data.shapes import TensorImages, image_transform
from hpml_bench.errors import HpmlError

DIGITS = 1797  # images in scikit-learn's copy
_SOURCE_MAX = 16  # the images' pixel values run from 0 to 16


@dataclass
class DigitsConfig(DatasetConfig):
    name: str = "digits"
    num_classes: int = 10
    channels: int = 1
    native_size: int = 32  # the 8x8 images upsampled to this side (the model sees image_size)
    num_train: int = 500  # training images (stratified by class); the other 1,297 validate
    split_seed: int = 0  # the fixed split's seed
    batch_size: int = 32

    # Shifts of up to one original pixel (dataset.aug.pad_crop_padding=4 of 32) and no flips: a
    # mirrored digit is another glyph.
    default_augment: ClassVar[tuple] = ("pad_crop",)

    def __post_init__(self):
        super().__post_init__()
        if not 10 <= self.num_train <= DIGITS - 10:
            raise HpmlError(f"dataset.num_train={self.num_train}: give 10 to {DIGITS - 10} "
                            f"(the rest of the {DIGITS} images validate)")

    def class_names(self, task: str):
        return [str(d) for d in range(10)]


def load_digits_uint8(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [1797, 1, size, size], labels int64 [1797]) from scikit-learn's copy."""
    # Imported here: scikit-learn costs ~1 s of start-up, and only this data set needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.rint(digits.images * (255 / _SOURCE_MAX)).astype(np.uint8))[:, None]
    images = v2.functional.resize(images, [size, size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    return images, torch.from_numpy(digits.target).long()


@DATASETS.register("digits", config=DigitsConfig)
def build_digits(cfg: DigitsConfig, task: str):
    if task != "classification":
        raise HpmlError("dataset=digits has labels only; use task=classification")
    # Imported here with load_digits (start-up time, see above).
    from sklearn.model_selection import train_test_split

    images, labels = load_digits_uint8(cfg.image_size)
    train, val = train_test_split(np.arange(len(labels)), train_size=cfg.num_train, stratify=labels.numpy(),
                                  random_state=cfg.split_seed)
    train, val = torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(val))
    return (TensorImages(images[train], labels[train], None, task, image_transform(cfg, True)),
            TensorImages(images[val], labels[val], None, task, image_transform(cfg, False)))
