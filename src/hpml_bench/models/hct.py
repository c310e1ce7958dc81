"""HCT: High-resolution Convolutional Transformer (Taha et al., MICCAI 2022).

Re-implemented from SEED-NOTES §1.2: a stem, pre-activation ResNet-v2 conv stages, then
"AC" stages whose first 3x3 conv is replaced by global Performer attention, then
BN-ReLU-GAP-linear. The official defaults (1 channel, 2 classes) have 1,737,010 parameters.
No positional embedding: any input height and width works.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from hpml_bench.models.base import MODELS, ModelConfig
from hpml_bench.models.performer import PerformerAttention


@dataclass
class HCTConfig(ModelConfig):
    name: str = "hct"
    input_size: int = 512
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])  # channels of the five stages
    blocks_per_stage: list[int] = field(default_factory=lambda: [2, 2, 2, 2, 2])  # residual blocks in each stage
    num_conv_stages: int = 3  # the rest are attention-conv (AC) stages; 5 = a pure CNN
    first_layer_stride: int = 2  # stride of the stem convolution
    attention_heads: int = 8  # Performer heads of the attention-conv stages
    attention_dropout: float = 0.1  # dropout on the attention output
    relu_kernel: bool = True  # generalized ReLU kernel; false = softmax-kernel FAVOR+

    default_num_classes: ClassVar[int] = 2
    default_in_channels: ClassVar[int] = 1
    min_input_size: ClassVar[int] = 5  # the stem's un-padded 3x3 max-pool needs a 3x3 map


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


class BasicBlockV2(nn.Module):
    """Pre-activation block: BN-ReLU, then conv3x3 x2; the shortcut (1x1 conv, no BN)
    takes the pre-activated input when present."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: bool):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(c_in), conv3x3(c_in, c_out, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(c_out), conv3x3(c_out, c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = conv1x1(c_in, c_out, stride) if downsample else None

    def forward(self, x):
        out = self.relu(self.bn1(x))
        residual = self.downsample(out) if self.downsample is not None else x
        out = self.conv1(out)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + residual


class ACBlock(nn.Module):
    """A BasicBlockV2 whose first conv is global linear attention (kept at c_in channels,
    added to the raw input); the remaining 3x3 conv both downsamples and widens."""

    def __init__(self, c_in: int, c_out: int, stride: int, downsample: bool, heads: int, dropout: float, relu_kernel: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.attention = PerformerAttention(c_in, heads, dropout, relu_kernel)
        self.bn2, self.conv = nn.BatchNorm2d(c_in), conv3x3(c_in, c_out, stride)
        self.relu = nn.ReLU()
        self.downsample = conv1x1(c_in, c_out, stride) if downsample else None

    def forward(self, x):
        out = self.relu(self.bn1(x))
        residual = self.downsample(out) if self.downsample is not None else x
        out = self.attention(out) + x
        out = self.conv(self.relu(self.bn2(out)))
        return out + residual


class HCT(nn.Module):
    def __init__(self, cfg: HCTConfig):
        super().__init__()
        widths = cfg.channels
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, widths[0], 7, stride=2, padding=3, bias=False),
                                  nn.MaxPool2d(3, stride=2))
        strides = [cfg.first_layer_stride] + [2] * (len(widths) - 1)
        c_in = widths[0]
        stages = []
        for i, (c_out, stride, blocks) in enumerate(zip(widths, strides, cfg.blocks_per_stage)):
            stages.append(self._stage(cfg, i < cfg.num_conv_stages, c_in, c_out, stride, blocks))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                  nn.Linear(c_in, cfg.num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(cfg: HCTConfig, conv: bool, c_in: int, c_out: int, stride: int, blocks: int) -> nn.Sequential:
        # GMIC style: the first block of every stage has a 1x1-conv shortcut, even at equal widths.
        layers = []
        for b in range(blocks):
            args = (c_in if b == 0 else c_out, c_out, stride if b == 0 else 1, b == 0)
            layers.append(BasicBlockV2(*args) if conv else
                          ACBlock(*args, cfg.attention_heads, cfg.attention_dropout, cfg.relu_kernel))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def pipeline_stages(self) -> list[nn.Module]:
        return [self.stem, *self.stages, self.head]

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: the last (attention-conv)
        stage, whose output is already an NCHW map."""
        return self.stages[-1], None


@MODELS.register("hct", config=HCTConfig)
def build_hct(cfg: HCTConfig) -> nn.Module:
    return HCT(cfg)
