"""What every model shares: its config base, the registry, weights loading, split points."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

MODELS: Registry = Registry("model")


@dataclass
class ModelConfig:
    """Fields every model has. `None` for classes/channels means: take them from the data set."""

    name: str = "???"  # the registered architecture (set by the model=<choice> file)
    num_classes: Optional[int] = None  # null: taken from the data set (its classes, or mask classes for segmentation)
    in_channels: Optional[int] = None  # null: taken from the data set's image channels
    # A local file (state_dict, loaded with weights_only=True) or a torchvision weights
    # name such as IMAGENET1K_V1 (downloaded, so online only); null = random init.
    weights: Optional[str] = None
    freeze_backbone: bool = False  # train only the head (fc / classifier); the rest keeps its weights
    # The input size the model was designed for: what `hpml list models` shows.
    input_size: int = 224
    task: str = "classification"  # classification | segmentation: what the model's output is scored as

    # What the architecture accepts (dataset.image_size is checked against them before a run):
    # the smallest square side, what the side must divide by (encoder-decoders), and the
    # largest (None: no limit; a fixed-size transformer takes only its own side).
    min_input_size: ClassVar[int] = 1
    input_divisor: ClassVar[int] = 1
    max_input_size: ClassVar[Optional[int]] = None
    # True: the input size is whatever the data set gives (input_size is set from it).
    input_follows_data: ClassVar[bool] = False

    # Used when neither the config nor a data set says (build_model("hct") on its own).
    default_num_classes: ClassVar[int] = 1000
    default_in_channels: ClassVar[int] = 3

    def resolved(self) -> "ModelConfig":
        """A copy with num_classes / in_channels filled in from the model's defaults."""
        return dataclasses.replace(
            self,
            num_classes=self.num_classes or self.default_num_classes,
            in_channels=self.in_channels or self.default_in_channels,
        )

    def inspected(self, dataset) -> "ModelConfig":
        """A copy whose task and input limits are known before the run (built-ins declare
        them in their class; models/source.py probes the outside ones)."""
        return self

    def describe_build(self) -> str:
        """The model as error lines name it."""
        return f"model {self.name}"

    def weights_file(self) -> Optional[str]:
        """The state_dict file build_model_from_config loads after building, if any."""
        is_file = self.weights and Path(self.weights).suffix in (".pt", ".pth", ".bin", ".ckpt")
        return self.weights if is_file else None


def build_model_from_config(cfg: ModelConfig) -> nn.Module:
    """Build the registered model named by `cfg.name`, then apply weights and freezing."""
    cfg = cfg.resolved()
    model = MODELS.get(cfg.name)(cfg)
    if cfg.weights_file():
        load_local_weights(model, cfg.weights_file())
    if cfg.freeze_backbone:
        freeze_all_but(model, head_of(model))
    return model


def build_for_shapes(cfg: ModelConfig) -> nn.Module:
    """The model on the meta device (shapes only, no memory) where its constructor allows it,
    else on the CPU (RegNet computes its widths with tensors while it is built)."""
    try:
        with torch.device("meta"):
            return build_model_from_config(cfg)
    except HpmlError:
        raise
    except Exception:  # noqa: BLE001 - any failure on meta: the CPU build says what is wrong, if anything
        return build_model_from_config(cfg)


def load_local_weights(model: nn.Module, path: str) -> None:
    """Load a state_dict file safely (weights_only=True); a checkpoint's 'model' entry works too."""
    file = Path(path)
    if not file.is_file():
        raise HpmlError(f"model.weights={path}: no such file; give a .pt/.pth state_dict or null")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-tensor file
        raise HpmlError(f"model.weights={path} could not be read ({type(exc).__name__}); is it a state_dict?") from exc
    state = state.get("model", state) if isinstance(state, dict) else state
    state = _without_resized_head(model, state, path)
    try:
        result = model.load_state_dict(state, strict=False)  # shape mismatches still raise
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise HpmlError(f"model.weights={path} does not fit this model: {first}") from exc
    prefix = _head_prefix(model) or "\0"
    missing = [k for k in result.missing_keys if not k.startswith(prefix)]  # only a dropped head may be missing
    if missing or result.unexpected_keys:
        keys = (missing + result.unexpected_keys)[:3]
        raise HpmlError(f"model.weights={path} does not fit this model: keys {', '.join(keys)} are missing or unexpected")


def _head_prefix(model: nn.Module) -> str | None:
    try:
        head = head_of(model)
    except HpmlError:
        return None
    return next((f"{name}." for name, m in model.named_modules() if m is head), None)


def _without_resized_head(model: nn.Module, state: dict, path: str) -> dict:
    """Fine-tuning: a file trained for other classes loads everything but its head, which
    keeps its fresh initialisation. A shape mismatch anywhere else is still an error."""
    prefix, own = _head_prefix(model), model.state_dict()
    resized = [k for k, v in state.items() if prefix and k.startswith(prefix) and k in own and own[k].shape != v.shape]
    if resized:
        print(f"note: model.weights={path}: head {prefix[:-1]} has another class count there; it starts fresh")
    return {k: v for k, v in state.items() if k not in resized}


def head_of(model: nn.Module) -> nn.Module:
    """The classifier that stays trainable under freeze_backbone (models name it `head`/`fc`)."""
    declared = getattr(model, "declared_head", None)  # model.head=<name> of an outside model
    if declared:
        return model.get_submodule(declared)
    for name in ("head", "fc", "classifier"):
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    raise HpmlError(f"model.freeze_backbone=true: {type(model).__name__} has no head/fc to keep trainable; "
                   f"declare it with model.head=<module name>")


def freeze_all_but(model: nn.Module, keep: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    for p in keep.parameters():
        p.requires_grad_(True)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def split_points(model: nn.Module) -> list[nn.Module]:
    """The ordered stage modules a pipeline may cut between (models define `pipeline_stages`)."""
    stages = getattr(model, "pipeline_stages", None)
    if stages is None:
        raise HpmlError(f"{type(model).__name__} declares no pipeline split points; use another strategy "
                        f"(or, for model=custom/torchvision/timm, declare model.split_after=[<module names>])")
    return list(stages())
