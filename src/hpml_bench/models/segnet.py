"""SegNet (Badrinarayanan et al.) as the segmentation seed built it: a VGG16 encoder
(conv-BN-ReLU, not pretrained) whose max-pool indices drive max-unpooling in a mirrored
decoder. 29,444,162 parameters at 3 in, 2 classes; any input size works."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import nn

from hpml_bench.models.base import MODELS, ModelConfig
from hpml_bench.models.vgg import vgg16_stages


@dataclass
class SegNetConfig(ModelConfig):
    name: str = "segnet"
    task: str = "segmentation"
    input_size: int = 256
    width_divisor: int = 1  # >1 narrows every layer (tiny variants)

    default_num_classes: ClassVar[int] = 2
    min_input_size: ClassVar[int] = 32  # five 2x2 max-pools (unpooling restores odd sizes)


def cbr(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out, momentum=0.1), nn.ReLU(inplace=True))


def _chain(widths: list[int], c_in: int) -> nn.Sequential:
    layers = []
    for c_out in widths:
        layers.append(cbr(c_in, c_out))
        c_in = c_out
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """Unpooling needs each encoder stage's indices, so it declares no pipeline split points."""

    def __init__(self, cfg: SegNetConfig):
        super().__init__()
        enc = vgg16_stages(cfg.width_divisor)  # [[64,64],[128,128],[256]*3,[512]*3,[512]*3]
        ins = [cfg.in_channels] + [s[-1] for s in enc[:-1]]
        self.encoders = nn.ModuleList([_chain(widths, c_in) for widths, c_in in zip(enc, ins)])
        # Decoder i mirrors encoder i: its convs keep the width, the last one narrows to the
        # next-shallower stage's width (decoder 1 keeps 64 and a plain conv makes the logits).
        decoders = []
        for i in range(len(enc) - 1, 0, -1):
            widths = enc[i][:-1] + [enc[i - 1][-1]]
            decoders.append(_chain(widths, enc[i][-1]))
        decoders.append(_chain(enc[0][:-1], enc[0][-1]))
        self.decoders = nn.ModuleList(decoders)
        self.classify = nn.Conv2d(enc[0][-1], cfg.num_classes, 3, padding=1)

    def forward(self, x):
        indices, sizes = [], []
        for encoder in self.encoders:
            x = encoder(x)
            # Plain ints: a traced artifact keeps them as constants (it is traced at one size).
            sizes.append([int(x.shape[-2]), int(x.shape[-1])])
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        for decoder in self.decoders:
            x = F.max_unpool2d(x, indices.pop(), 2, 2, output_size=sizes.pop())
            x = decoder(x)
        return self.classify(x)

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: the last decoder block (full size)."""
        return self.decoders[-1], None


@MODELS.register("segnet", config=SegNetConfig)
def build_segnet(cfg: SegNetConfig) -> nn.Module:
    return SegNet(cfg)
