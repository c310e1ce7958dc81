"""FCN-8s style segmentation on a VGG16-BN backbone (torchvision), as the segmentation
seed built it: upsample stage 5 by a 4x4 transposed conv and add stage 4, 1x1 conv to 256,
upsample and add stage 3, 1x1 conv to the classes, then a x8 transposed conv to [B, C, H, W].
H and W must divide by 32.

Difference from the seed, on purpose: the seed defined three 1x1 score convs (512, 512 and
128 -> classes) that it never used (20,101,192 parameters, 20,098,882 used), which forced
DDP's find_unused_parameters. They are left out unless `seed_score_layers=true`, which adds
them back (still unused) so a seed checkpoint's state_dict loads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn
from torchvision.models import VGG16_BN_Weights, vgg16_bn
from torchvision.models.vgg import make_layers

from hpml_bench.models.base import MODELS, ModelConfig
from hpml_bench.models.pretrained import pretrained_state_dict
from hpml_bench.models.vgg import vgg16_layout, vgg16_stages

# Slices of VGG16-BN's `features` that end at each of the five max-pools.
_CUTS = [0, 7, 14, 24, 34, 44]


@dataclass
class FCNConfig(ModelConfig):
    name: str = "fcn"
    task: str = "segmentation"
    input_size: int = 256
    width_divisor: int = 1  # >1 narrows the backbone (tiny variants; no pretrained weights)
    seed_score_layers: bool = False  # add the seed's two unused score convolutions (parameter-count parity only)

    default_num_classes: ClassVar[int] = 2
    # Five 2x2 max-pools, stage maps added after x2 up-sampling: sides divide by 32.
    min_input_size: ClassVar[int] = 32
    input_divisor: ClassVar[int] = 32


class FCN(nn.Module):
    def __init__(self, cfg: FCNConfig):
        super().__init__()
        features = self._backbone(cfg)
        self.stages = nn.ModuleList([features[a:b] for a, b in zip(_CUTS, _CUTS[1:])])
        c3, c4, c5 = (s[-1] for s in vgg16_stages(cfg.width_divisor)[2:])
        mid, nc = c3, cfg.num_classes
        self.up5 = nn.ConvTranspose2d(c5, c4, 4, stride=2, padding=1, bias=False)
        self.reduce4 = nn.Conv2d(c4, mid, 1)
        self.up4 = nn.ConvTranspose2d(mid, mid, 4, stride=2, padding=1, bias=False)
        self.classify = nn.Conv2d(mid, nc, 1)
        self.up8 = nn.ConvTranspose2d(nc, nc, 16, stride=8, padding=4, bias=False)
        if cfg.seed_score_layers:
            self.scores1, self.scores2 = nn.Conv2d(c5, nc, 1), nn.Conv2d(c4, nc, 1)
            self.scores3 = nn.Conv2d(vgg16_stages(cfg.width_divisor)[1][-1], nc, 1)

    @staticmethod
    def _backbone(cfg: FCNConfig) -> nn.Sequential:
        if cfg.width_divisor == 1:
            vgg = vgg16_bn()
            if cfg.weights and "." not in cfg.weights:  # a torchvision name; a file is loaded later
                vgg.load_state_dict(pretrained_state_dict(VGG16_BN_Weights, cfg.weights))
            features = vgg.features
        else:
            features = make_layers(vgg16_layout(cfg.width_divisor), batch_norm=True)
        if cfg.in_channels != 3:
            features[0] = nn.Conv2d(cfg.in_channels, features[0].out_channels, 3, padding=1)
        return features

    def forward(self, x):
        s1 = self.stages[0](x)
        s2 = self.stages[1](s1)
        s3 = self.stages[2](s2)
        s4 = self.stages[3](s3)
        s5 = self.stages[4](s4)
        x = self.reduce4(self.up5(s5) + s4)
        x = self.classify(self.up4(x) + s3)
        return self.up8(x)

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: stage 4 fused with stage 5 (1/8 size)."""
        return self.up4, None


@MODELS.register("fcn", config=FCNConfig)
def build_fcn(cfg: FCNConfig) -> nn.Module:
    return FCN(cfg)
