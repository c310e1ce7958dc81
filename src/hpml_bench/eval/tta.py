"""Test-time augmentation for `hpml eval` (`tta=`): the model scores several views of each batch
and the views' class probabilities are averaged; the result is handed on as log-probabilities,
so accuracy takes their argmax and the loss is the averaged prediction's cross-entropy.

- `none`: the batch as it is.
- `flip`: the batch and its mirror image (segmentation: the mirrored view's map mirrored back).
- `multicrop` (classification): the ten-crop of the batch upscaled by 1 / 0.875 (the four corners
  and the centre, each also mirrored; torchvision's ten_crop), the size the model was trained at.
"""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

Model = Callable[[torch.Tensor], torch.Tensor]
TTA: Registry = Registry("tta")
CROP_FRACTION = 0.875  # a crop's side / the upscaled side (ImageNet's 224 of 256)


def with_tta(model: Model, name: str, task) -> Model:
    """`model` (x -> outputs) as x -> log of the views' mean probabilities (`none`: unchanged)."""
    return TTA.get(name)(model, task)


def _mean_log_probs(outputs: list[torch.Tensor]) -> torch.Tensor:
    probs = torch.stack([o.float().softmax(1) for o in outputs]).mean(0)
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


@TTA.register("none")
def _none(model: Model, task) -> Model:
    return model


@TTA.register("flip")
def _flip(model: Model, task) -> Model:
    segmentation = task.name == "segmentation"

    def run(x: torch.Tensor) -> torch.Tensor:
        mirrored = task.logits(model(x.flip(-1)))
        return _mean_log_probs([task.logits(model(x)), mirrored.flip(-1) if segmentation else mirrored])

    return run


@TTA.register("multicrop")
def _multicrop(model: Model, task) -> Model:
    if task.name != "classification":
        raise HpmlError(f"tta=multicrop scores crops of whole images (classification); for {task.name} use tta=flip")

    def run(x: torch.Tensor) -> torch.Tensor:
        size = list(x.shape[-2:])
        larger = [round(s / CROP_FRACTION) for s in size]
        views = v2.functional.ten_crop(v2.functional.resize(x, larger, antialias=True), size)
        return _mean_log_probs([task.logits(model(view.contiguous())) for view in views])

    return run
