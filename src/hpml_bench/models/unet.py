"""UNet (Ronneberger et al.) as the segmentation seed built it: filters 64..1024,
nearest-upsample + conv decoder, 1x1 conv to class logits [B, C, H, W].
34,527,106 parameters at 3 channels in, 2 classes. H and W must divide by 16."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from hpml_bench.models.base import MODELS, ModelConfig


@dataclass
class UNetConfig(ModelConfig):
    name: str = "unet"
    task: str = "segmentation"
    input_size: int = 256
    filters: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024])  # channels of the five encoder levels (the decoder mirrors them)

    default_num_classes: ClassVar[int] = 2
    # Four 2x2 max-pools whose maps the decoder concatenates back: sides divide by 16.
    min_input_size: ClassVar[int] = 16
    input_divisor: ClassVar[int] = 16


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def up_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Skip connections cross every level, so it declares no pipeline split points."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        f = cfg.filters
        self.pool = nn.MaxPool2d(2, 2)
        self.encoders = nn.ModuleList([conv_block(c_in, c_out) for c_in, c_out in zip([cfg.in_channels, *f[:-1]], f)])
        self.ups = nn.ModuleList([up_conv(f[i], f[i - 1]) for i in range(len(f) - 1, 0, -1)])
        self.decoders = nn.ModuleList([conv_block(f[i], f[i - 1]) for i in range(len(f) - 1, 0, -1)])
        self.out = nn.Conv2d(f[0], cfg.num_classes, 1)

    def forward(self, x):
        skips: list[torch.Tensor] = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        for up, decoder in zip(self.ups, self.decoders):
            x = decoder(torch.cat([skips.pop(), up(x)], dim=1))
        return self.out(x)

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: the last decoder block (full size)."""
        return self.decoders[-1], None


@MODELS.register("unet", config=UNetConfig)
def build_unet(cfg: UNetConfig) -> nn.Module:
    return UNet(cfg)
