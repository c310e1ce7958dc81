"""A data set's per-sample augmentation (dataset.augment's uint8 and float stages) and its
float conversion, as every data path runs it:

- decoded files and in-memory sets (files.py, shapes.py, cifar10.py): the whole of it per
  sample in the loader (a worker or the main process): `__call__`;
- the `hpml prepare` cache and GPU decode: the uint8 stage per sample where the uint8 image is
  (cache: in the loader; GPU decode: on the device), then float conversion, the float stage and
  the batch's flips on the device (batch_transforms.BatchAugment).
Each op of a sample draws from its own seed, derived from the sample's (seed, epoch, index)
(sample_rng.py), so every path gives the same sample the same draws, whatever process or
device makes it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from hpml_bench.data.augment import AUGMENTATIONS, BatchOp, CoinFlip, build_ops
from hpml_bench.data.base import DatasetConfig, normalize
from hpml_bench.data.mix import BatchMix, Chained
from hpml_bench.data.sample_rng import mix64_array, op_seed, salt_of, uniform_array
from hpml_bench.errors import HpmlError


class SampleAugment:
    """The training split's random per-sample ops (none for validation) and the conversion to a
    normalised float image. Picklable: loader workers receive it with their data set."""

    def __init__(self, cfg: DatasetConfig, segmentation: bool, train: bool):
        names = cfg.augment if train else []
        ops = build_ops(names, cfg.aug, cfg.image_size, cfg.num_classes, segmentation)
        self.uint8 = [(salt_of(name), op) for name, op in ops if op.stage == "uint8"]
        self.float = [(salt_of(name), op) for name, op in ops if op.stage == "float"]
        self.segmentation = segmentation
        self.to_float = v2.Compose([v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
                                    normalize(cfg.channels)])

    @property
    def flip_only(self) -> Optional[tuple[int, float]]:
        """(salt, p) when the uint8 stage is one flip, which the cache and GPU paths run on whole
        batches (BatchAugment); None when there is none or more (those run per sample)."""
        if len(self.uint8) == 1 and isinstance(self.uint8[0][1], CoinFlip):
            return self.uint8[0][0], self.uint8[0][1].p
        return None

    @property
    def per_sample(self) -> bool:
        """Whether a batched path must still run ops per sample (anything but a lone flip)."""
        return bool(self.float) or (bool(self.uint8) and self.flip_only is None)

    def uint8_stage(self, image: torch.Tensor, mask: Optional[torch.Tensor], seed: Optional[int],
                    device: Optional[torch.device] = None) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The uint8 ops on one image (and mask); plain tensors in and out."""
        if not self.uint8:
            return image, mask
        inputs = (tv_tensors.Image(image),) if mask is None else (tv_tensors.Image(image), tv_tensors.Mask(mask))
        for salt, op in self.uint8:
            inputs = op(inputs, None if seed is None else op_seed(seed, salt), device)
        image = inputs[0].as_subclass(torch.Tensor)
        return image, None if mask is None else inputs[1].as_subclass(torch.Tensor)

    def float_stage(self, image: torch.Tensor, seed: Optional[int], device: Optional[torch.device] = None):
        """The float ops on one normalised image (masks keep their classes: erasing only)."""
        for salt, op in self.float:
            (image,) = op((image,), None if seed is None else op_seed(seed, salt), device)
        return image.as_subclass(torch.Tensor)

    def __call__(self, image: torch.Tensor, target: torch.Tensor, seed: Optional[int]):
        """uint8 image [C, H, W] and label (or uint8 mask) -> float image, label (or int64 mask)."""
        mask = target if self.segmentation else None
        image, mask = self.uint8_stage(image, mask, seed)
        image = self.float_stage(self.to_float(tv_tensors.Image(image)), seed)
        return (image, mask.long()) if self.segmentation else (image, target)

    def uint8_batch(self, images: torch.Tensor, targets: torch.Tensor, seeds: Optional[torch.Tensor],
                    device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The uint8 stage over a batch, per sample (unless `per_sample` is False: then as is)."""
        if not self.per_sample or not self.uint8:
            return images, targets
        out = [self.uint8_stage(x, t if self.segmentation else None, _seed(seeds, j), device)
               for j, (x, t) in enumerate(zip(images, targets))]
        images = torch.stack([x for x, _ in out])
        return images, torch.stack([m for _, m in out]) if self.segmentation else targets

    def float_batch(self, images: torch.Tensor, seeds: Optional[torch.Tensor]) -> torch.Tensor:
        if not self.float:
            return images
        return torch.stack([self.float_stage(x, _seed(seeds, j), x.device) for j, x in enumerate(images)])

    def flip_coins(self, seeds: torch.Tensor) -> torch.Tensor:
        """bool [B]: the lone flip's coins of a batch, equal to CoinFlip's on each sample."""
        salt, p = self.flip_only
        ops = mix64_array(seeds.numpy().astype(np.uint64) ^ np.uint64(salt)) >> np.uint64(1)  # op_seed
        return torch.from_numpy(uniform_array(ops) < p)


def _seed(seeds: Optional[torch.Tensor], j: int) -> Optional[int]:
    return None if seeds is None else int(seeds[j])


def batch_mix(cfg: DatasetConfig, task: str) -> Optional[BatchMix]:
    """The batch stage of the training split (mixup/cutmix), or None."""
    ops = [AUGMENTATIONS.get(name)(cfg.aug, cfg.image_size, cfg.num_classes) for name in cfg.augment]
    mixes = [op.transform for op in ops if isinstance(op, BatchOp)]
    if not mixes:
        return None
    if task != "classification":
        raise HpmlError(f"dataset.augment: mixup and cutmix mix labels, not masks; remove them for task={task}")
    return BatchMix(mixes)


def with_batch_mix(ds, cfg: DatasetConfig, task: str):
    """The training set `ds` with the batch stage after its own batch transform (if any)."""
    mix = batch_mix(cfg, task)
    if mix is not None:
        ds.batch_transform = Chained(getattr(ds, "batch_transform", None), mix)
    return ds


def check_augment(cfg: DatasetConfig, task: str) -> None:
    """HpmlError for augmentations the task cannot take (masks), before any data is read."""
    build_ops(cfg.augment, cfg.aug, cfg.image_size, cfg.num_classes, task == "segmentation")
    batch_mix(cfg, task)

