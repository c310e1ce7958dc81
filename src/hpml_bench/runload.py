"""A finished (or interrupted) run folder read back: its typed config, its trained model,
and the image preprocessing its validation data went through. What `hpml cam` (and any
other command that applies a trained run to new images) needs, from the folder alone."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import OmegaConf
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import CONFIG, OVERRIDES

CHECKPOINTS = ("best", "last")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass
class LoadedRun:
    cfg: object  # TrainConfig
    model: nn.Module  # eval mode, on CPU
    class_names: list[str]
    preprocess: Callable[[Path], tuple[torch.Tensor, torch.Tensor]]  # path -> (uint8 [C,S,S], float [1,C,S,S])


def load_run(run_dir: str | Path, checkpoint: str = "best") -> LoadedRun:
    """The run's config (config.yaml over its overrides), its model with the checkpoint's
    weights, its class names and its evaluation-time image preprocessing."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    state = _checkpoint_state(run_dir, checkpoint)
    from hpml_bench.models import build_model_from_config

    # The checkpoint holds every weight: no pretrained file or download, nothing frozen.
    model = build_model_from_config(dataclasses.replace(cfg.model, weights=None, freeze_backbone=False))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise HpmlError(f"{run_dir}: checkpoint does not fit the model its config.yaml describes "
                        f"({str(exc).splitlines()[0]})") from exc
    return LoadedRun(cfg, model.eval(), class_names(cfg), image_preprocess(cfg.dataset))


def load_config(run_dir: Path):
    """TrainConfig of a run folder: the schema composed with its saved overrides, then
    config.yaml (the resolved values the run used, e.g. the numeric image_size) on top."""
    from hpml_bench.config import compose_train, config_error_line, to_train_config
    from hpml_bench.config_dirs import run_config_dir

    if not (run_dir / CONFIG).is_file():
        raise HpmlError(f"run={run_dir}: no {CONFIG} there; give the run folder an hpml train wrote")
    overrides = []
    if (run_dir / OVERRIDES).is_file():
        overrides = [str(o) for o in OmegaConf.load(run_dir / OVERRIDES)
                     if not str(o).lstrip("+~").startswith(("hydra", "resume"))]
    try:
        with run_config_dir(run_dir):  # its groups (model=mynet ...) from the user's folder it was trained with
            dcfg = OmegaConf.merge(compose_train(overrides), OmegaConf.load(run_dir / CONFIG))
    except HpmlError:
        raise
    except Exception as exc:
        raise HpmlError(f"{run_dir / CONFIG} does not fit this hpml's config: {config_error_line(exc)}") from exc
    return to_train_config(dcfg)


def _checkpoint_state(run_dir: Path, checkpoint: str) -> dict:
    if checkpoint not in CHECKPOINTS:
        raise HpmlError(f"checkpoint={checkpoint}: use best or last")
    file = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not file.is_file():
        others = [c for c in CHECKPOINTS if (run_dir / "checkpoints" / f"{c}.pt").is_file()]
        hint = f"use checkpoint={others[0]}" if others else "it saved none (trainer.checkpoint_every=0?); train it with checkpoints"
        raise HpmlError(f"run folder {run_dir} has no checkpoints/{checkpoint}.pt; {hint}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HpmlError(f"checkpoint {file} could not be read ({type(exc).__name__}); it is corrupt or not an hpml checkpoint") from exc
    return state["model"]


def class_names(cfg) -> list[str]:
    """Names for the model's output classes: the data set's where it has them, else numbers."""
    ds = cfg.dataset
    if cfg.task == "segmentation":
        return ["background", "foreground"] if ds.mask_classes == 2 else [str(i) for i in range(ds.mask_classes)]
    if ds.name == "shapes":
        from hpml_bench.data.shapes import SHAPES

        return list(SHAPES)
    if ds.name == "cifar10":
        return list(CIFAR10_CLASSES)
    folder = Path(ds.root or "") / getattr(ds, "train_dir", "")
    if ds.name == "image_folder" and ds.root and folder.is_dir():
        from torchvision.datasets.folder import find_classes

        return find_classes(str(folder))[0]
    return [str(i) for i in range(ds.num_classes)]


def image_preprocess(ds) -> Callable[[Path], tuple[torch.Tensor, torch.Tensor]]:
    """path -> (uint8 image as the model sees it, normalised batch of one), the way the
    run's validation images were prepared: on-disk data sets through their own fixed and
    evaluation transforms (centre crop, resize, normalise); generated ones resized to the
    run's image size and normalised like them."""
    from hpml_bench.data.base import normalize
    from hpml_bench.data.files import CorruptImage, FileDatasetConfig, augment_transform, fixed_transform, read_image

    if isinstance(ds, FileDatasetConfig):
        fixed, finish = fixed_transform(ds), augment_transform(ds, train=False)
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
