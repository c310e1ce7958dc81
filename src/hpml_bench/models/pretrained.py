"""torchvision's named weights (model.weights=IMAGENET1K_V1): downloaded once into torch's
hub cache, or read from there offline; the error says which file to put where."""
from __future__ import annotations

from pathlib import Path

import torch

from hpml_bench.errors import HpmlError


def named_weights(weight_enum, name: str):
    """The enum member `name` of a torchvision weights enum, or an HpmlError listing them."""
    try:
        return weight_enum[name]
    except KeyError:
        names = [w.name for w in weight_enum]
        raise HpmlError(f"model.weights={name}: torchvision has {', '.join(names)} (or give a file path)") from None


def cached_weights_file(weights) -> Path:
    """Where torchvision looks for (and saves) the file of `weights`: <hub dir>/checkpoints/<name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def pretrained_state_dict(weight_enum, name: str) -> dict:
    """The state_dict of torchvision's `name` weights (cache first, else download)."""
    weights = named_weights(weight_enum, name)
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # offline (URLError, timeouts) or a truncated cached file
        file = cached_weights_file(weights)
        raise HpmlError(f"model.weights={name}: could not get {weights.url} ({type(exc).__name__}); offline, put "
                        f"{file.name} into {file.parent}/ (or set TORCH_HOME), or give model.weights=<a .pth state_dict file>") from exc
