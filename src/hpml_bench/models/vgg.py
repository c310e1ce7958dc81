"""VGG16-BN layouts shared by FCN (torchvision's backbone) and SegNet (its own encoder)."""
from __future__ import annotations

from torchvision.models.vgg import cfgs

VGG16 = cfgs["D"]  # [64, 64, 'M', 128, 128, 'M', 256 x3, 'M', 512 x3, 'M', 512 x3, 'M']


def vgg16_stages(width_divisor: int = 1) -> list[list[int]]:
    """Conv widths of the five pooled stages, optionally narrowed for tiny variants."""
    stages, current = [], []
    for v in VGG16:
        if v == "M":
            stages.append(current)
            current = []
        else:
            current.append(max(1, v // width_divisor))
    return stages


def vgg16_layout(width_divisor: int = 1) -> list:
    """torchvision's make_layers list with narrowed widths."""
    return [v if v == "M" else max(1, v // width_divisor) for v in VGG16]
