"""MixUp and CutMix on whole batches, on the training device, with soft targets.

torchvision's v2.MixUp / v2.CutMix / v2.RandomChoice, whose draws (the mixing weight, CutMix's
box, which of the two) are taken from a generator instead of the global RNG, in the same order
and by the same kernels: for a generator in the state the global RNG had, the batches and
targets equal torchvision's (tests/test_augment.py). A generator, not a fork of the global RNG,
because the batch transform may run on the device loader's look-ahead thread, where the global
generator belongs to the training loop. The device loader seeds it per batch from the sampler's
seed, epoch, rank and the batch's place in the epoch (device_loader.py), so a resumed epoch
mixes as the uninterrupted one did.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence

import torch
from torchvision.transforms import v2


def beta_sample(alpha: float, generator: Optional[torch.Generator]) -> float:
    """One draw of Beta(alpha, alpha), as torch.distributions.Beta(...).sample(()) draws it
    (Beta samples a Dirichlet over [alpha, alpha] and keeps its first share), from `generator`."""
    concentration = torch.tensor([[float(alpha), float(alpha)]])
    return float(torch._sample_dirichlet(concentration, generator=generator)[0, 0])


class SeededMixUp(v2.MixUp):
    """v2.MixUp drawing its weight from `self.generator` (None: the global RNG)."""

    generator: Optional[torch.Generator] = None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return dict(lam=beta_sample(self.alpha, self.generator))


class SeededCutMix(v2.CutMix):
    """v2.CutMix drawing its weight and box from `self.generator` (torchvision's make_params,
    the draws given the generator)."""

    generator: Optional[torch.Generator] = None

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        lam = beta_sample(self.alpha, self.generator)
        height, width = v2.functional.get_size(next(x for x in flat_inputs if isinstance(x, torch.Tensor)))
        r_x = torch.randint(width, size=(1,), generator=self.generator)
        r_y = torch.randint(height, size=(1,), generator=self.generator)
        r = 0.5 * math.sqrt(1.0 - lam)
        r_w_half, r_h_half = int(r * width), int(r * height)
        x1 = int(torch.clamp(r_x - r_w_half, min=0))
        y1 = int(torch.clamp(r_y - r_h_half, min=0))
        x2 = int(torch.clamp(r_x + r_w_half, max=width))
        y2 = int(torch.clamp(r_y + r_h_half, max=height))
        lam_adjusted = float(1.0 - (x2 - x1) * (y2 - y1) / (width * height))
        return dict(box=(x1, y1, x2, y2), lam_adjusted=lam_adjusted)


class BatchMix:
    """(float images [B, C, H, W], labels [B], generator) -> (mixed images, soft targets [B, classes]).

    Several transforms (mixup and cutmix both listed): one of them per batch, chosen with equal
    chances, as v2.RandomChoice (torchvision's classification recipe) chooses."""

    def __init__(self, transforms: Sequence[Any]):
        self.transforms = list(transforms)
        self.p = [1 / len(self.transforms)] * len(self.transforms)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.transforms[0]
        if len(self.transforms) > 1:  # v2.RandomChoice's draw
            chosen = self.transforms[int(torch.multinomial(torch.tensor(self.p), 1, generator=generator))]
        chosen.generator = generator
        try:
            return chosen(images, targets)
        finally:
            chosen.generator = None


class Chained:
    """A data set's own batch transform (uint8 -> float on the device; none: batches come float)
    followed by the batch mix: what the device loader runs on a training batch."""

    def __init__(self, first: Optional[Callable], mix: BatchMix):
        self.first, self.mix = first, mix

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, generator: Optional[torch.Generator] = None,
                 seeds: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.first is not None:
            images, targets = self.first(images, targets, generator, seeds)
        return self.mix(images, targets, generator)
