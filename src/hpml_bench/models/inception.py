"""InceptionV3 (torchvision) for transfer learning, as the retinopathy seed used it:
299x299 input, a new `fc` for the classes, optionally everything else frozen (then only
fc trains: 10,245 parameters at 5 classes). In training mode with aux_logits the model
returns (logits, aux_logits) and the task adds the aux loss with weight 0.4."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn
from torchvision.models import Inception_V3_Weights
from torchvision.models.inception import Inception3

from hpml_bench.models.base import MODELS, ModelConfig
from hpml_bench.models.pretrained import pretrained_state_dict


@dataclass
class InceptionV3Config(ModelConfig):
    name: str = "inception_v3"
    input_size: int = 299
    aux_logits: bool = True  # the auxiliary classifier (its loss counts 0.4 in training)
    # torchvision's ImageNet weights expect its own input transform; keep it on with them.
    transform_input: bool = False

    min_input_size: ClassVar[int] = 75  # as torchvision's weights meta says


class InceptionV3(Inception3):
    def pipeline_stages(self) -> list[nn.Module]:
        # aux logits branch off mid-network: a pipeline needs them off.
        return [
            nn.Sequential(self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                          self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2),
            nn.Sequential(self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a),
            nn.Sequential(self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e),
            nn.Sequential(self.Mixed_7a, self.Mixed_7b, self.Mixed_7c),
            nn.Sequential(self.avgpool, self.dropout, nn.Flatten(1), self.fc),
        ]

    def cam_target(self):
        """(layer, reshape) that `hpml cam` reads activations from: the last Inception block."""
        return self.Mixed_7c, None


@MODELS.register("inception_v3", config=InceptionV3Config)
def build_inception_v3(cfg: InceptionV3Config) -> nn.Module:
    named = cfg.weights if cfg.weights and "." not in cfg.weights else None
    net = InceptionV3(num_classes=1000, aux_logits=True, transform_input=cfg.transform_input, init_weights=named is None)
    if named:
        net.load_state_dict(pretrained_state_dict(Inception_V3_Weights, named))
    if cfg.in_channels != 3:
        conv = net.Conv2d_1a_3x3.conv
        net.Conv2d_1a_3x3.conv = nn.Conv2d(cfg.in_channels, conv.out_channels, 3, stride=2, bias=False)
    net.fc = nn.Linear(net.fc.in_features, cfg.num_classes)
    net.AuxLogits.fc = nn.Linear(net.AuxLogits.fc.in_features, cfg.num_classes)
    if not cfg.aux_logits:
        net.aux_logits, net.AuxLogits = False, None
    return net
