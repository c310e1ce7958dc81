"""A small multi-layer perceptron on flattened images: the cheapest model with split
points and no batch norm or dropout, so parallel strategies can be checked for exact
equivalence and their overhead measured without compute hiding it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from torch import nn

from hpml_bench.models.base import MODELS, ModelConfig


@dataclass
class MLPConfig(ModelConfig):
    name: str = "mlp"
    input_size: int = 32  # the image side; set from dataset.image_size
    hidden: list[int] = field(default_factory=lambda: [256, 128, 64])  # widths of the hidden layers (no BatchNorm, no dropout)

    input_follows_data: ClassVar[bool] = True  # the first layer is sized for the data set's images


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        widths = [cfg.in_channels * cfg.input_size**2, *cfg.hidden]
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.Flatten(1), nn.Linear(widths[0], widths[1]), nn.ReLU())] +
            [nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(widths[1:], widths[2:])])
        self.head = nn.Linear(widths[-1], cfg.num_classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def pipeline_stages(self) -> list[nn.Module]:
        return [*self.blocks, self.head]


@MODELS.register("mlp", config=MLPConfig)
def build_mlp(cfg: MLPConfig) -> nn.Module:
    return MLP(cfg)
