"""`model=timm model.arch=<name>`: any of timm's architectures through timm.create_model,
with num_classes / in_chans from the data set; pretrained weights from a local file
(model.weights=<file>: .safetensors, .pth, .bin), which timm adapts to the classes and
channels itself, so nothing is downloaded."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import MODELS
from hpml_bench.models.source import SourceConfig, build_declared, declared_side
from hpml_bench.registry import did_you_mean


@dataclass
class TimmConfig(SourceConfig):
    name: str = "timm"
    # a timm architecture name: test_resnet, convnext_atto, vit_tiny_patch16_224, ...
    arch: str = ""

    def __post_init__(self):
        if not self.arch:
            raise HpmlError("model=timm needs model.arch=<name> (`hpml list models --source timm` lists them)")
        if self.weights and not Path(self.weights).expanduser().is_file():  # refused before the run starts
            raise HpmlError(f"model.weights={self.weights}: no such file; timm weights are read from a local file "
                            f"offline: download {self.arch}'s model.safetensors (Hugging Face hub) and give its path")

    def describe_build(self) -> str:
        return f"timm model {self.arch}"

    def weights_file(self) -> Optional[str]:
        return None  # timm.create_model reads the file (and adapts head and stem) itself

    def build(self) -> nn.Module:
        return build_timm(self)

    def declared_sizes(self, model: nn.Module) -> list[int]:
        """The input size timm resolves for the model (its pretrained_cfg, as
        timm.data.resolve_model_data_config reads it), then the generic attributes."""
        from timm.data import resolve_model_data_config  # here: timm is optional (the timm extra)

        try:
            side = declared_side(resolve_model_data_config(model).get("input_size"))
        except Exception:  # noqa: BLE001 - a model without a pretrained_cfg declares nothing here
            side = None
        return [*([side] if side else []), *super().declared_sizes(model)]


def import_timm():
    try:
        import timm
    except ImportError:
        raise HpmlError("model=timm needs the timm package: pip install 'hpml-bench[timm]'") from None
    return timm


def build_timm(cfg: TimmConfig) -> nn.Module:
    timm = import_timm()
    if not timm.is_model(cfg.arch):
        known = timm.list_models()
        raise HpmlError(f"model.arch={cfg.arch} is not a timm architecture{did_you_mean(cfg.arch, known)}; "
                        f"`hpml list models --source timm --filter '*{cfg.arch[:4]}*'` lists similar ones")
    kwargs = {"num_classes": cfg.num_classes, "in_chans": cfg.in_channels, **cfg.kwargs}
    if cfg.weights:
        file = Path(cfg.weights).expanduser()
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(file)})
    try:
        return timm.create_model(cfg.arch, **kwargs)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        raise HpmlError(f"timm model {cfg.arch}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]} "
                        f"(check model.kwargs / model.weights)") from exc


def archs(pattern: str = "") -> list[str]:
    return import_timm().list_models(pattern or "")


@MODELS.register("timm", config=TimmConfig)
def build_timm_model(cfg: TimmConfig) -> nn.Module:
    return build_declared(cfg)
