"""ResNet-18/34/50/101 from torchvision, adapted to any channel and class count."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn
from torchvision import models as tvm
from torchvision.models.resnet import BasicBlock, Bottleneck

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import MODELS, ModelConfig
from hpml_bench.models.pretrained import pretrained_state_dict

_ARCHS = {
    18: (BasicBlock, [2, 2, 2, 2], tvm.ResNet18_Weights),
    34: (BasicBlock, [3, 4, 6, 3], tvm.ResNet34_Weights),
    50: (Bottleneck, [3, 4, 6, 3], tvm.ResNet50_Weights),
    101: (Bottleneck, [3, 4, 23, 3], tvm.ResNet101_Weights),
}


@dataclass
class ResNetConfig(ModelConfig):
    name: str = "resnet"
    depth: int = 18  # 18 or 50 (torchvision's ResNet-18 / ResNet-50)
    # CIFAR-style stem (3x3 conv, stride 1, no max-pool) for inputs of 32-64 pixels,
    # where the ImageNet stem would shrink the last feature map to 1x1.
    small_input: bool = False


class ResNet(tvm.ResNet):
    """torchvision's ResNet (same state_dict keys, so its weight files load) plus split points."""

    def pipeline_stages(self) -> list[nn.Module]:
        return [
            nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool),
            self.layer1, self.layer2, self.layer3, self.layer4,
            nn.Sequential(self.avgpool, nn.Flatten(1), self.fc),
        ]

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: the last conv stage."""
        return self.layer4, None


@MODELS.register("resnet", config=ResNetConfig)
def build_resnet(cfg: ResNetConfig) -> nn.Module:
    if cfg.depth not in _ARCHS:
        raise HpmlError(f"model.depth={cfg.depth} is not a ResNet depth; use one of {sorted(_ARCHS)}")
    block, layers, weight_enum = _ARCHS[cfg.depth]
    net = ResNet(block, layers)
    if cfg.weights and "." not in cfg.weights:  # a torchvision name; a file is loaded later
        net.load_state_dict(pretrained_state_dict(weight_enum, cfg.weights))
    if cfg.num_classes != net.fc.out_features:
        net.fc = nn.Linear(net.fc.in_features, cfg.num_classes)
    if cfg.small_input:
        net.conv1 = nn.Conv2d(cfg.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif cfg.in_channels != 3:
        net.conv1 = nn.Conv2d(cfg.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net

