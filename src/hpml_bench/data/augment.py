"""The training split's random augmentations: registered parts, chosen by name in
`dataset.augment=[...]` and tuned by `dataset.aug.*`.

Each registered builder returns an op of one of three stages, run in this order whatever the
order of the list (within a stage, the list's order):
  uint8   on the decoded uint8 image (and its segmentation mask: geometric ops move it), per sample
  float   on the normalised float image, per sample (random erasing: erased to the mean colour)
  batch   on the whole batch on the training device (MixUp, CutMix: soft targets)
The per-sample ops draw from the sample's seed (sample_rng.py); sample_augment.py runs them
on each data path, mix.py the batch ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hpml_bench.data.mix import SeededCutMix, SeededMixUp
from hpml_bench.data.sample_rng import forked, uniform
from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

STAGES = ("uint8", "float", "batch")
AUTOAUGMENT_POLICIES = {p.name.lower(): p for p in v2.AutoAugmentPolicy}


@dataclass
class AugmentConfig:
    """The knobs of the augmentations that `dataset.augment` names."""

    hflip_p: float = 0.5  # hflip: chance that a sample is mirrored left-right
    pad_crop_padding: int = 4  # pad_crop: pixels of zero padding before the random crop back to image_size
    # random_resized_crop: range of the crop's share of the image's area (torchvision's default)
    crop_scale: List[float] = field(default_factory=lambda: [0.08, 1.0])
    # random_resized_crop: range of the crop's aspect ratio, width / height
    crop_ratio: List[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    randaugment_num_ops: int = 2  # randaugment: ops applied to each image
    randaugment_magnitude: int = 9  # randaugment: strength of each op, 0-30
    autoaugment_policy: str = "imagenet"  # autoaugment: the learned policy, imagenet | cifar10 | svhn
    augmix_severity: int = 3  # augmix: strength of its ops, 1-10
    erasing_p: float = 0.25  # random_erasing: chance that a sample has a rectangle erased
    erasing_scale: List[float] = field(default_factory=lambda: [0.02, 0.33])  # random_erasing: area share range
    erasing_ratio: List[float] = field(default_factory=lambda: [0.3, 3.3])  # random_erasing: aspect ratio range
    mixup_alpha: float = 0.2  # mixup: Beta(alpha, alpha) of the mixing weight (torchvision's recipe: 0.2)
    cutmix_alpha: float = 1.0  # cutmix: Beta(alpha, alpha) of the kept area (torchvision's recipe: 1.0)

    def __post_init__(self):
        for knob in ("hflip_p", "erasing_p"):
            if not 0 <= getattr(self, knob) <= 1:
                raise HpmlError(f"dataset.aug.{knob}={getattr(self, knob)} must be between 0 and 1")
        for knob in ("mixup_alpha", "cutmix_alpha"):
            if getattr(self, knob) <= 0:
                raise HpmlError(f"dataset.aug.{knob}={getattr(self, knob)} must be positive")
        for knob, low, high in (("crop_scale", 0, 1), ("crop_ratio", 0, None), ("erasing_scale", 0, 1),
                                ("erasing_ratio", 0, None)):
            _check_range(knob, getattr(self, knob), low, high)
        if self.pad_crop_padding < 0:
            raise HpmlError(f"dataset.aug.pad_crop_padding={self.pad_crop_padding} must be 0 or more")
        if not 0 <= self.randaugment_magnitude <= 30 or self.randaugment_num_ops < 1:
            raise HpmlError(f"dataset.aug.randaugment_magnitude={self.randaugment_magnitude} (0-30) and "
                            f"randaugment_num_ops={self.randaugment_num_ops} (1 or more): set them in range")
        if not 1 <= self.augmix_severity <= 10:
            raise HpmlError(f"dataset.aug.augmix_severity={self.augmix_severity} must be 1 to 10")
        if self.autoaugment_policy not in AUTOAUGMENT_POLICIES:
            raise HpmlError(f"dataset.aug.autoaugment_policy={self.autoaugment_policy}: use one of "
                            f"{', '.join(AUTOAUGMENT_POLICIES)}")


def _check_range(knob: str, value: Sequence[float], low: float, high: Optional[float]) -> None:
    ok = len(value) == 2 and low < value[0] <= value[1] and (high is None or value[1] <= high)
    if not ok:
        bound = f"in ({low}, {high}]" if high is not None else f"above {low}"
        raise HpmlError(f"dataset.aug.{knob}={list(value)}: give [min, max] with min <= max, both {bound}")


class Op:
    """One augmentation: its stage, what it does to masks, and how to run it on one sample.

    masks: "move" (geometric: applied to the image and its mask alike), "keep" (changes image
    pixels only; the mask stays right), "refuse" (cannot keep a mask right: not for segmentation).
    """

    stage, masks = "uint8", "move"

    def __call__(self, inputs: tuple, seed: Optional[int], device: Optional[torch.device] = None) -> tuple:
        raise NotImplementedError


class Forked(Op):
    """A torchvision v2 transform run on the global RNG seeded with the op's seed (forked)."""

    def __init__(self, transform: Callable, stage: str = "uint8", masks: str = "move"):
        self.transform, self.stage, self.masks = transform, stage, masks

    def __call__(self, inputs: tuple, seed: Optional[int], device: Optional[torch.device] = None) -> tuple:
        with forked(seed, device):
            out = self.transform(*inputs)
        return out if isinstance(out, tuple) else (out,)


class CoinFlip(Op):
    """Mirrors left-right (image and mask) when the sample's coin is below p. The coin is a hash
    of the op's seed, not a draw: the cache and GPU paths flip whole batches with the same coins
    (batch_transforms.py) without a generator per sample."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, inputs: tuple, seed: Optional[int], device: Optional[torch.device] = None) -> tuple:
        coin = uniform(seed) if seed is not None else float(torch.rand(()))
        return tuple(F.horizontal_flip(x) for x in inputs) if coin < self.p else inputs


class BatchOp(Op):
    """MixUp / CutMix: run on whole batches by mix.BatchMix; `transform` draws from a generator."""

    stage, masks = "batch", "refuse"

    def __init__(self, transform):
        self.transform = transform


# name -> (AugmentConfig, image_size, num_classes) -> Op
AUGMENTATIONS: Registry = Registry("augmentation")


@AUGMENTATIONS.register("hflip")
def hflip(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return CoinFlip(knobs.hflip_p)


@AUGMENTATIONS.register("pad_crop")
def pad_crop(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return Forked(v2.RandomCrop(size, padding=knobs.pad_crop_padding))  # CIFAR-style


@AUGMENTATIONS.register("random_resized_crop")
def random_resized_crop(knobs: AugmentConfig, size: int, classes: int) -> Op:
    # Masks are resized with nearest-neighbour (v2 picks it for tv_tensors.Mask).
    return Forked(v2.RandomResizedCrop(size, scale=tuple(knobs.crop_scale), ratio=tuple(knobs.crop_ratio),
                                       antialias=True))


@AUGMENTATIONS.register("randaugment")
def randaugment(knobs: AugmentConfig, size: int, classes: int) -> Op:
    # Its shears, rotations and translations would leave a mask behind: images only.
    return Forked(v2.RandAugment(knobs.randaugment_num_ops, knobs.randaugment_magnitude), masks="refuse")


@AUGMENTATIONS.register("trivialaugment")
def trivialaugment(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return Forked(v2.TrivialAugmentWide(), masks="refuse")


@AUGMENTATIONS.register("autoaugment")
def autoaugment(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return Forked(v2.AutoAugment(AUTOAUGMENT_POLICIES[knobs.autoaugment_policy]), masks="refuse")


@AUGMENTATIONS.register("augmix")
def augmix(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return Forked(v2.AugMix(severity=knobs.augmix_severity), masks="refuse")


@AUGMENTATIONS.register("random_erasing")
def random_erasing(knobs: AugmentConfig, size: int, classes: int) -> Op:
    # After normalisation, as torchvision's recipe places it: value 0 is the mean colour.
    erase = v2.RandomErasing(knobs.erasing_p, scale=tuple(knobs.erasing_scale), ratio=tuple(knobs.erasing_ratio))
    return Forked(erase, stage="float", masks="keep")


@AUGMENTATIONS.register("mixup")
def mixup(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return BatchOp(SeededMixUp(alpha=knobs.mixup_alpha, num_classes=classes))


@AUGMENTATIONS.register("cutmix")
def cutmix(knobs: AugmentConfig, size: int, classes: int) -> Op:
    return BatchOp(SeededCutMix(alpha=knobs.cutmix_alpha, num_classes=classes))


def resolve_augment(value: Any, default: Sequence[str]) -> list[str]:
    """dataset.augment as a list of registered names: true -> the data set's default list,
    false/null -> none; a name or a list of names is checked against the registry."""
    if value is True:
        return list(default)
    if value is False or value is None:
        return []
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str):
            raise HpmlError(f"dataset.augment={names}: give true, false or a list of augmentation names")
        AUGMENTATIONS.get(name)  # an unknown name: "did you mean", the choices
    return names


def build_ops(names: Sequence[str], knobs: AugmentConfig, size: int, classes: int,
              segmentation: bool) -> list[tuple[str, Op]]:
    """(name#k, op) for each listed augmentation (k counts repeats of a name: its seed's salt);
    HpmlError for an op that cannot keep segmentation masks right."""
    ops, seen = [], {}
    for name in names:
        op = AUGMENTATIONS.get(name)(knobs, size, classes)
        if segmentation and op.masks == "refuse":
            keep = [n for n in AUGMENTATIONS.names() if AUGMENTATIONS.get(n)(knobs, size, 2).masks != "refuse"]
            why = "mixes labels, not masks" if op.stage == "batch" else "cannot move masks with their images"
            raise HpmlError(f"dataset.augment: {name} {why}; for task=segmentation use {', '.join(keep)}")
        seen[name] = seen.get(name, -1) + 1
        ops.append((f"{name}#{seen[name]}", op))
    return ops
