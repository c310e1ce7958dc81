"""`model=torchvision model.arch=<name>`: any classification model of torchvision.models or
segmentation model of torchvision.models.segmentation, through list_models / get_model;
the head resized to the data set's classes, the first convolution to its channels."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import MODELS
from hpml_bench.models.pretrained import named_weights, pretrained_state_dict
from hpml_bench.models.source import SourceConfig, build_declared, declared_side
from hpml_bench.registry import did_you_mean


@dataclass
class TorchvisionConfig(SourceConfig):
    name: str = "torchvision"
    # a torchvision.models (or .segmentation) builder name: resnet18, mobilenet_v3_small, fcn_resnet50, ...
    arch: str = ""

    def __post_init__(self):
        if not self.arch:
            raise HpmlError("model=torchvision needs model.arch=<name> (`hpml list models --source torchvision` lists them)")

    def describe_build(self) -> str:
        return f"torchvision model {self.arch}"

    def inspected(self, dataset) -> "TorchvisionConfig":
        if self.weights and not self.weights_file() and self.arch in archs():  # a weights name: refused before the run
            import torchvision.models as tvm

            named_weights(tvm.get_model_weights(self.arch), self.weights)
        return super().inspected(dataset)

    def build(self) -> nn.Module:
        return build_torchvision(self)

    def declared_sizes(self, model: nn.Module) -> list[int]:
        """The model's own image_size (ViT), then what its weights were made at: the crop (or
        resize, segmentation) of their transforms, then their meta's min_size."""
        return [*super().declared_sizes(model), *weights_sizes(self.arch)]


def weights_sizes(arch: str) -> list[int]:
    """Sides torchvision's default weights for `arch` state (none for a builder without weights)."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return []
    preset = getattr(weights.transforms, "keywords", {})  # functools.partial(ImageClassification, crop_size=...)
    found = [declared_side(preset.get(key)) for key in ("crop_size", "resize_size")]
    found.append(declared_side(weights.meta.get("min_size")))
    return [side for side in found if side]


def archs() -> dict[str, str]:
    """name -> task of every torchvision classification and segmentation builder."""
    import torchvision.models as tvm

    found = {name: "classification" for name in tvm.list_models(module=tvm)}
    found.update({name: "segmentation" for name in tvm.list_models(module=tvm.segmentation)})
    return found


def build_torchvision(cfg: TorchvisionConfig) -> nn.Module:
    import torchvision.models as tvm

    known = archs()
    if cfg.arch not in known:
        raise HpmlError(f"model.arch={cfg.arch} is not a torchvision model{did_you_mean(cfg.arch, known)}; "
                        f"`hpml list models --source torchvision` lists the {len(known)}")
    segmentation = known[cfg.arch] == "segmentation"
    named = cfg.weights if cfg.weights and not cfg.weights_file() else None
    # With named weights the model is built as they were trained (their classes), then adapted.
    kwargs = {"weights": None, **({"weights_backbone": None, "aux_loss": False} if segmentation else {}),
              **({} if named else {"num_classes": cfg.num_classes}), **cfg.kwargs}
    try:
        net = tvm.get_model(cfg.arch, **kwargs)
    except (TypeError, ValueError) as exc:
        raise HpmlError(f"torchvision model {cfg.arch}: {exc} (check model.kwargs)") from exc
    if named:
        state = pretrained_state_dict(tvm.get_model_weights(cfg.arch), named)
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith("aux_classifier.")})
        _resize_last(net, cfg.num_classes)
    if cfg.in_channels != 3:
        _adapt_first_conv(net, cfg.in_channels)
    if segmentation:
        net.__class__ = _OUT_ONLY[type(net)]
    return net


def _resize_last(net: nn.Module, classes: int) -> None:
    """Fresh output layers for `classes`: the last Linear (or, for segmentation and SqueezeNet,
    1x1 Conv2d) and its siblings in the same top-level block with as many outputs (LRASPP has two)."""
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    last_name, last = layers[-1]
    old = _outputs(last)
    if old == classes:
        return
    block = last_name.split(".")[0]
    for name, layer in layers:
        if name.split(".")[0] != block or _outputs(layer) != old:
            continue
        if isinstance(layer, nn.Linear):
            new = nn.Linear(layer.in_features, classes, bias=layer.bias is not None)
        else:
            new = nn.Conv2d(layer.in_channels, classes, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias is not None)
        net.set_submodule(name, new)


def _outputs(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _adapt_first_conv(net: nn.Module, channels: int) -> None:
    """The first Conv2d for `channels` inputs; pretrained RGB filters are summed (grey) or
    averaged and repeated, as timm's adapt_input_conv does, so they still respond."""
    name, conv = next((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, bias=conv.bias is not None)
    if conv.weight.device.type != "meta":
        with torch.no_grad():
            w = conv.weight.sum(1, keepdim=True)
            new.weight.copy_(w if channels == 1 else w.repeat(1, channels, 1, 1) / channels)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    net.set_submodule(name, new)


# torchvision's segmentation models return {"out": ..., "aux": ...}; hpml's losses, exports
# and the C++ loader take one tensor. Subclasses keep the state_dict keys (weights load).
class _OutTensor:
    def forward(self, x):
        return super().forward(x)["out"]


def _out_only_classes() -> dict[type, type]:
    from torchvision.models.segmentation import deeplabv3, fcn, lraspp

    classes = {}
    for base in (fcn.FCN, deeplabv3.DeepLabV3, lraspp.LRASPP):
        cls = type(f"{base.__name__}Out", (_OutTensor, base), {"__module__": __name__})
        globals()[cls.__name__] = cls  # importable by name (pickling, deepcopy)
        classes[base] = cls
    return classes


_OUT_ONLY = _out_only_classes()


@MODELS.register("torchvision", config=TorchvisionConfig)
def build_torchvision_model(cfg: TorchvisionConfig) -> nn.Module:
    return build_declared(cfg)
