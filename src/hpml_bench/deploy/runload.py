"""A trained model back from its run folder, and the preprocessing its training used.

The one place that turns `runs/<id>/` into (model in eval mode, typed configs, preprocessing
spec). `hpml export`, `hpml predict` and `hpml cam` start here; the spec is what meta.json
carries to the C++ loader.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import CONFIG

CHECKPOINTS = ("best", "last")


@dataclass
class TrainedRun:
    """What a finished (or checkpointed) run holds, ready for inference."""

    run_dir: Path
    model: nn.Module  # eval mode, on CPU
    model_cfg: Any  # the model's typed config (num_classes / in_channels filled in)
    dataset_cfg: Any  # the data set's typed config
    task: str  # classification | segmentation
    checkpoint: Path
    epoch: Optional[int]

    @property
    def model_name(self) -> str:
        return self.model_cfg.name

    def preprocess(self) -> dict:
        """The preprocessing spec (what meta.json's "preprocess" holds)."""
        return preprocess_spec(self.dataset_cfg)

    def class_names(self) -> list[str]:
        return class_names(self.dataset_cfg, self.model_cfg.num_classes)


def read_run_config(run_dir: Path):
    """(model config, dataset config, task) as the run trained them (typed, checked): the one
    reading of a run folder's config that `hpml cam` uses too (runload.load_config)."""
    from hpml_bench.runload import load_config

    cfg = load_config(run_dir)
    # A weights name/file was only the starting point: the checkpoint holds every weight.
    return dataclasses.replace(cfg.model, weights=None, freeze_backbone=False), cfg.dataset, cfg.task


def checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint not in CHECKPOINTS:
        raise HpmlError(f"checkpoint={checkpoint}: use best or last")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        other = "last" if checkpoint == "best" else "best"
        hint = f"; try checkpoint={other}" if (run_dir / "checkpoints" / f"{other}.pt").is_file() else \
            "; train the run first (hpml train)"
        raise HpmlError(f"run={run_dir}: no checkpoint {path.name}{hint}")
    return path


def load_trained(run_dir: str | Path, checkpoint: str = "best") -> TrainedRun:
    """The run's model with the checkpoint's weights, in eval mode on CPU."""
    from hpml_bench.models import build_model_from_config

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HpmlError(f"run={run_dir} is not a folder; give a run folder such as runs/<id>")
    model_cfg, dataset_cfg, task = read_run_config(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    from hpml_bench.integrity import load_checkpoint_file
    from hpml_bench.runlock import reading_checkpoint

    try:
        with reading_checkpoint(run_dir):
            state = load_checkpoint_file(path)
    except HpmlError:
        raise
    except Exception as exc:
        raise HpmlError(f"checkpoint {path} could not be read ({type(exc).__name__}); it is corrupt") from exc
    model = build_model_from_config(model_cfg)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise HpmlError(f"checkpoint {path} does not fit the run's model {model_cfg.name}: "
                        f"{str(exc).strip().splitlines()[0]}") from exc
    return TrainedRun(run_dir, model.eval(), model_cfg, dataset_cfg, task, path, state.get("epoch"))


def preprocess_spec(dataset_cfg) -> dict:
    """How an image file becomes the model's input, exactly as training's validation did.

    decode (RGB, or PIL's "L" for one channel) -> uint8 [C,H,W] -> optional centre crop ->
    bilinear antialiased resize to size x size on the uint8 image (torch's kernel, which C++
    reaches through LibTorch) -> x / 255 -> (x - mean) / std.
    """
    from hpml_bench.data.base import normalize

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


def class_names(dataset_cfg, num_classes: int) -> list[str]:
    """The data set's class names where it has them, else "0".."n-1"."""
    names = _named_classes(dataset_cfg)
    if names is None or len(names) != num_classes:
        names = [str(i) for i in range(num_classes)]
    return list(names)


def _named_classes(cfg) -> Optional[list[str]]:
    from hpml_bench.data.shapes import SHAPES

    if cfg.name == "shapes":
        return list(SHAPES)
    if cfg.name == "cifar10":
        return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    train_dir = Path(cfg.root or "") / getattr(cfg, "train_dir", "")
    if getattr(cfg, "train_dir", None) and train_dir.is_dir():  # an ImageFolder tree: sorted class folders
        return sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    return None
