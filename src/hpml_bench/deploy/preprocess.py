"""Image file -> model input, as pure tensor ops that cpp/native_hct.cpp repeats op for op.

Why not torchvision transforms directly: C++ has no torchvision, and OpenCV's resize
differs from torch's by up to ~0.014 on a normalised input. Both sides instead decode to the
same uint8 pixels (PNG is lossless; grey via PIL's integer formula) and call the same ATen
kernel (`interpolate(..., bilinear, antialias=True)` on uint8, channels-last), which is also
what training's `v2.Resize` ran. The result equals training's validation transform
(tests/test_deploy_preprocess.py asserts it).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from hpml_bench.data.files import read_image
from hpml_bench.errors import HpmlError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def read_uint8(path: Path, channels: int) -> torch.Tensor:
    """uint8 [C, H, W] in channels-last memory (the layout OpenCV's buffer has in C++)."""

    return read_image(path, channels)  # PIL decode; HWC buffer permuted, so already channels-last


def center_crop(image: torch.Tensor, crop: int | None) -> torch.Tensor:
    """torchvision's CenterCrop offsets (round half to even), no padding (crop <= image)."""
    if not crop:
        return image
    h, w = image.shape[-2:]
    if crop > h or crop > w:
        raise HpmlError(f"image {w}x{h} is smaller than the run's center_crop={crop}")
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return image[..., top:top + crop, left:left + crop]


def to_input(image: torch.Tensor, spec: dict) -> torch.Tensor:
    """uint8 [C, H, W] -> normalised float [1, C, h, w] as the spec says."""
    image = center_crop(image, spec.get("center_crop"))
    x = image.unsqueeze(0)
    size = list(spec["size"])
    if list(x.shape[-2:]) != size:
        x = F.interpolate(x.contiguous(memory_format=torch.channels_last), size=size, mode="bilinear",
                          align_corners=False, antialias=True)
    x = x.to(torch.float32).mul_(spec["scale"])
    mean = torch.tensor(spec["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def load_input(path: Path, spec: dict) -> torch.Tensor:
    return to_input(read_uint8(path, spec["channels"]), spec)


def list_images(where: Path) -> list[Path]:
    """The image itself, or the folder's images sorted by name (the order native_hct uses)."""

    if where.is_file():
        return [where]
    if where.is_dir():
        files = sorted(p for p in where.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise HpmlError(f"images={where}: no image files ({', '.join(IMAGE_SUFFIXES)}) in that folder")
        return files
    raise HpmlError(f"images={where}: no such file or folder")
