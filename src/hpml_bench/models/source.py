"""What the three outside sources of models share (torchvision, timm, the user's own code):
the declarations hpml cannot see in a module it did not write (head, Grad-CAM layer,
pipeline split points, input-size limits), checked against the built module before a run,
and the task and input limits probed (models/probe.py) when not declared."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import ModelConfig
from hpml_bench.models.probe import DESIGN_SIZE, first_line, probe_once
from hpml_bench.registry import did_you_mean


@dataclass
class SourceConfig(ModelConfig):
    """A model hpml did not write: what it declares comes from here."""

    # auto: inferred from one forward pass on a dummy batch ([N, C] classification, [N, C, H, W] segmentation)
    task: str = "auto"
    # module name of the classifier kept trainable by freeze_backbone (null: head / fc / classifier)
    head: Optional[str] = None
    # module name whose output map Grad-CAM explains (null: the last conv layer)
    cam_layer: Optional[str] = None
    # module names after which strategy=pipe may cut the model (top-level blocks of its forward)
    split_after: list[str] = field(default_factory=list)
    # the side it was designed for, which dataset.image_size=auto falls back to (null: what the
    # model declares: timm's pretrained_cfg, torchvision's weights, a ViT's image_size; else 224)
    input_size: Optional[int] = None
    # the smallest square input side it accepts (null: probed once, on the meta device where it runs)
    min_input_size: Optional[int] = None
    # what the input side must divide by (null: probed with the minimum)
    input_divisor: Optional[int] = None
    # the largest side it accepts (null: probed; a fixed-size transformer takes only its own side)
    max_input_size: Optional[int] = None
    # extra keyword arguments for the constructor (+model.kwargs.drop_rate=0.1: the + adds a key)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> nn.Module:
        """The bare module (num_classes / in_channels filled in); each source defines it."""
        raise NotImplementedError

    def inspected(self, dataset) -> "SourceConfig":
        """A copy whose task and input limits are known: declared ones are kept, the rest
        probed with the data set's channels and classes."""
        return probe(self, dataset.channels, dataset.num_classes, _probe_size(dataset, self))

    def describe_build(self) -> str:
        return f"model={self.name}"

    def declared_sizes(self, model: nn.Module) -> list[int]:
        """The sides the built model says it takes, its design side first (the probe tries
        them when the data set's side fails). Sources add their own ways of saying it."""
        found = (declared_side(getattr(model, name, None)) for name in ("image_size", "img_size", "input_size"))
        return [side for side in found if side]


def _probe_size(dataset, cfg: SourceConfig) -> int:
    """The side the run will most likely feed (checked again once image_size is resolved)."""
    size = dataset.native_size if getattr(dataset, "size_is_auto", False) else dataset.image_size
    return int(size or cfg.input_size or DESIGN_SIZE)


def probe(cfg: SourceConfig, channels: int, classes: int, size: int) -> SourceConfig:
    """`cfg` with its task and input limits filled in by probing the model (models/probe.py)."""
    if cfg.task not in ("auto", "classification", "segmentation"):
        raise HpmlError(f"model.task={cfg.task}: use auto, classification or segmentation")
    found = probe_once(cfg, channels, classes, size, build_declared)
    if cfg.task != "auto" and cfg.task != found.task:
        raise HpmlError(f"model.task={cfg.task} but {cfg.describe_build()} gives "
                        f"{'[N, C, H, W]' if found.task == 'segmentation' else '[N, C]'} outputs (a {found.task} model); "
                        f"drop model.task")
    return dataclasses.replace(cfg, task=found.task, min_input_size=found.min_size, input_divisor=found.divisor,
                               max_input_size=found.max_size, input_size=found.design_size)


def declared_side(value) -> Optional[int]:
    """A square side from an int or an (H, W) / (C, H, W) tuple that a model declares."""
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, (tuple, list)) and len(value) >= 2 and value[-1] == value[-2] and isinstance(value[-1], int):
        return value[-1]
    return None


# -- declarations ------------------------------------------------------------------------
def build_declared(cfg: SourceConfig) -> nn.Module:
    """The source's module with hpml's declarations attached and checked."""
    model = cfg.build()
    if not isinstance(model, nn.Module):
        raise HpmlError(f"{cfg.describe_build()} returned {type(model).__name__}, not a torch.nn.Module; "
                        f"return the model itself")
    names = dict(model.named_modules())
    for key, value in (("head", cfg.head), ("cam_layer", cfg.cam_layer), *(("split_after", s) for s in cfg.split_after)):
        if value is not None and value not in names:
            raise HpmlError(f"model.{key}={value} is not a module of {cfg.describe_build()}{did_you_mean(value, names)}; "
                            f"its top-level modules: {', '.join(n for n, _ in model.named_children())}")
    if cfg.head:
        model.declared_head = cfg.head  # base.head_of reads it
    model.cam_target = functools.partial(cam_target, model, cfg.cam_layer)
    if cfg.split_after:
        model.pipeline_stages = functools.partial(pipeline_stages, model, list(cfg.split_after), cfg.describe_build())
    return model


def cam_target(model: nn.Module, name: Optional[str]):
    """(layer, reshape) for `hpml cam`: the declared layer, else the last Conv2d."""
    if name is None:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise HpmlError(f"{type(model).__name__} has no Conv2d layer to explain; set model.cam_layer=<module name>")
        name = convs[-1]
    return model.get_submodule(name), _tokens_to_map


def _tokens_to_map(x: torch.Tensor) -> torch.Tensor:
    """Grad-CAM needs [N, C, H, W]: a transformer's [N, tokens, C] loses its prefix tokens
    (class / register tokens) and becomes a square map; an NHWC map is transposed."""
    if x.dim() == 3:
        side = int((x.shape[1]) ** 0.5)
        x = x[:, x.shape[1] - side * side:].reshape(x.shape[0], side, side, x.shape[2])
        return x.permute(0, 3, 1, 2)
    return x


def pipeline_stages(model: nn.Module, names: list[str], what: str) -> list[nn.Module]:
    """The model cut after each named module into a chain of torch.fx graph modules (they
    share the model's parameters). A cut that a skip connection crosses is refused."""
    from torch.fx import GraphModule, Tracer
    from torch.fx.passes.split_module import split_module

    class CutTracer(Tracer):  # the named modules stay whole (one call each), so a cut lands after them
        def is_leaf_module(self, m, qualname):
            return qualname in names or super().is_leaf_module(m, qualname)

    try:
        traced = GraphModule(model, CutTracer().trace(model))
    except Exception as exc:
        raise HpmlError(f"strategy=pipe: torch.fx cannot trace {what} ({type(exc).__name__}: {first_line(exc)}); "
                        f"use another strategy") from exc
    part, ends = [0], set(names)
    where: dict[str, int] = {}
    for node in traced.graph.nodes:
        where[node.name] = part[0]
        if node.op == "call_module" and node.target in ends:
            part[0] += 1
            ends.discard(node.target)
    if ends:
        raise HpmlError(f"model.split_after: {', '.join(sorted(ends))} is not called in the forward of {what}")
    gm = split_module(traced, model, lambda node: where[node.name], keep_original_order=True)
    stages = [getattr(gm, f"submod_{i}") for i in range(len(names) + 1) if hasattr(gm, f"submod_{i}")]
    for i, stage in enumerate(stages):
        inputs = [n for n in stage.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise HpmlError(f"model.split_after={names[i - 1]}: the forward of {what} carries {len(inputs)} tensors "
                            f"across that cut (a skip connection); cut where one tensor flows")
    return stages
