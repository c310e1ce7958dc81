"""A finished (or interrupted) run folder read back: its typed config, its trained model,
its class names and the image preprocessing its validation data went through.

The one reader of `runs/<id>/`: `hpml export`, `hpml predict`, `hpml cam` and `hpml eval`
all start here. The preprocessing spec is what meta.json carries to the C++ loader.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from hpml_bench.config.groups import config_error_line
from hpml_bench.config.words import as_config
from hpml_bench.data.base import normalize
from hpml_bench.data.files import (
    CorruptImage,
    FileDatasetConfig,
    fixed_transform,
    float_transform,
    read_image,
)
from hpml_bench.errors import HpmlError
from hpml_bench.models import build_model_from_config
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.provenance import run_config_dir, with_recorded_source
from hpml_bench.train.config import compose_train, to_train_config


@dataclass
class TrainedRun:
    """What a finished (or checkpointed) run holds, ready for inference."""

    folder: RunFolder
    cfg: object  # TrainConfig (model weights=None: the checkpoint holds every weight)
    model: nn.Module  # eval mode, on CPU
    checkpoint: Path
    epoch: Optional[int]

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def model_cfg(self):
        return self.cfg.model

    @property
    def dataset_cfg(self):
        return self.cfg.dataset

    @property
    def task(self) -> str:
        return self.cfg.task

    @property
    def model_name(self) -> str:
        return self.cfg.model.name

    def preprocess(self) -> dict:
        """The preprocessing spec (what meta.json's "preprocess" holds)."""
        return preprocess_spec(self.dataset_cfg)

    def image_preprocess(self) -> Callable[[Path], tuple[torch.Tensor, torch.Tensor]]:
        return image_preprocess(self.dataset_cfg)

    def class_names(self) -> list[str]:
        return class_names(self.cfg)


def load_trained(run_dir: str | Path | RunFolder, checkpoint: str = "best") -> TrainedRun:
    """The run's model with the checkpoint's weights, in eval mode on CPU."""
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    if not folder.path.is_dir():
        raise HpmlError(f"run={folder} is not a folder; give a run folder such as runs/<id>")
    cfg = load_config(folder)
    path = folder.trained_checkpoint(checkpoint)
    try:
        with folder.reading_checkpoint():  # refused while a training run is writing a checkpoint
            state = folder.load_checkpoint(path)  # checks the sha256 recorded beside it
    except HpmlError:
        raise
    except Exception as exc:
        raise HpmlError(f"checkpoint {path} could not be read ({type(exc).__name__}); it is corrupt or not an hpml checkpoint") from exc
    model = build_model_from_config(cfg.model)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise HpmlError(f"checkpoint {path} does not fit the model its config.yaml describes ({cfg.model.name}): "
                        f"{str(exc).strip().splitlines()[0]}") from exc
    return TrainedRun(folder, cfg, model.eval(), path, state.get("epoch"))


def load_config(run_dir: Path | RunFolder, dataset_overrides: Sequence[str] = ()):
    """TrainConfig of a run folder: the schema composed with its saved overrides, then
    config.yaml (the resolved values the run used, e.g. the numeric image_size) on top, then
    `dataset_overrides` (`dataset.root=...`: hpml eval on another folder). Model weights are
    dropped: the checkpoint holds every weight (no pretrained file or download, nothing frozen)."""
    folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
    if not folder.config.is_file():
        raise HpmlError(f"run={folder}: no {folder.CONFIG} there; give the run folder an hpml train wrote")
    overrides = []
    if folder.overrides.is_file():
        overrides = [str(o) for o in OmegaConf.load(folder.overrides)
                     if not str(o).lstrip("+~").startswith(("hydra", "resume"))]
    try:
        with run_config_dir(folder):  # its groups (model=mynet ...) from the user's folder it was trained with
            dcfg = OmegaConf.merge(compose_train(overrides), OmegaConf.load(folder.config),
                                   as_config(dataset_overrides))
        dcfg = with_recorded_source(folder, dcfg)  # a model from the user's code: the file it trained with
    except HpmlError:
        raise
    except Exception as exc:
        raise HpmlError(f"{folder.config} does not fit this hpml's config: {config_error_line(exc)}") from exc
    cfg = to_train_config(dcfg)
    cfg.model = dataclasses.replace(cfg.model, weights=None, freeze_backbone=False)
    return cfg


def class_names(cfg) -> list[str]:
    """Names for the model's output classes: the data set's where it has them (its config's
    `class_names(task)`), else background/foreground for two mask classes, else numbers."""
    count = cfg.model.num_classes
    names = cfg.dataset.class_names(cfg.task)
    if names is None and cfg.task == "segmentation" and count == 2:
        names = ["background", "foreground"]
    if names is None or len(names) != count:
        names = [str(i) for i in range(count)]
    return list(names)


def preprocess_spec(dataset_cfg) -> dict:
    """How an image file becomes the model's input, exactly as training's validation did.

    decode (RGB, or PIL's "L" for one channel) -> uint8 [C,H,W] -> optional centre crop ->
    bilinear antialiased resize to size x size on the uint8 image (torch's kernel, which C++
    reaches through LibTorch) -> x / 255 -> (x - mean) / std.
    """

    norm = normalize(dataset_cfg.channels)
    return {
        "channels": dataset_cfg.channels,
        "center_crop": getattr(dataset_cfg, "center_crop", None) or 0,  # 0 = none (OpenCV's JSON reader has no null)
        "size": [dataset_cfg.image_size, dataset_cfg.image_size],
        "resize": "bilinear_antialias_uint8",
        "scale": 1 / 255,
        "mean": [float(m) for m in norm.mean],
        "std": [float(s) for s in norm.std],
    }


def image_preprocess(ds) -> Callable[[Path], tuple[torch.Tensor, torch.Tensor]]:
    """path -> (uint8 image as the model sees it, normalised batch of one), the way the
    run's validation images were prepared: on-disk data sets through their own fixed and
    evaluation transforms (centre crop, resize, normalise); generated ones resized to the
    run's image size and normalised like them."""
    if isinstance(ds, FileDatasetConfig):
        fixed, finish = fixed_transform(ds), float_transform(ds)
    else:
        fixed = v2.Resize((ds.image_size, ds.image_size), antialias=True)
        finish = v2.Compose([v2.ToDtype(torch.float32, scale=True), normalize(ds.channels)])

    def preprocess(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            image = read_image(path, ds.channels)
        except CorruptImage as exc:
            raise HpmlError(f"{path} is not an image that can be read ({exc.__cause__.__class__.__name__}); "
                            f"give image files (png, jpg, tif, ...)") from exc
        shown = fixed(tv_tensors.Image(image))
        return shown.as_subclass(torch.Tensor), finish(shown).as_subclass(torch.Tensor)[None]

    return preprocess


def run_device(name: str) -> torch.device:
    """The device `eval` / `cam` run a finished run on: auto (a GPU when one is visible), cpu, cuda."""
    if name not in ("auto", "cpu", "cuda"):
        raise HpmlError(f"device={name}: use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise HpmlError("device=cuda but no CUDA GPU is visible; use device=cpu")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")
