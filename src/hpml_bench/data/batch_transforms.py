"""Augmentation and normalisation of whole uint8 batches, after they reach their device.

Loaders hand out uint8 images (a quarter of float32's bytes through worker queues and over
the bus); this runs on the batch where training runs: on the GPU after the copy, or in the
main process on CPU. Random draws come from the host's generator, so a batch is the same on
every device for the same seed.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F


class BatchAugment:
    """uint8 images [B, C, H, W] (and labels [B] or uint8 masks [B, H, W]) -> float images,
    normalised; with `flip`, each sample flipped horizontally on its own coin (its mask too).
    Flips the batch's own uint8 tensors in place (a loader's batch is a fresh copy)."""

    def __init__(self, normalize: v2.Normalize, flip: bool, segmentation: bool):
        self.flip, self.segmentation = flip, segmentation
        # ToDtype makes a new float tensor, so Normalize may work on it in place (one pass less).
        self.to_float = v2.Compose([v2.ToDtype(torch.float32, scale=True),
                                    v2.Normalize(normalize.mean, normalize.std, inplace=True)])

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.flip:
            # Integer indices chosen on the host: a boolean mask would make a GPU wait (nonzero),
            # and flipping only the chosen samples moves half the bytes of a where() over all.
            chosen = torch.nonzero(torch.rand(len(images)) < 0.5).flatten().to(images.device)
            images[chosen] = F.horizontal_flip(images[chosen])
            if self.segmentation:
                targets[chosen] = F.horizontal_flip(targets[chosen])
        images = self.to_float(images)
        return images, targets.long() if self.segmentation else targets
