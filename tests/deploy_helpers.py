"""Run folders for the deploy tests: a checkpoint of a tiny model without training it, and PNGs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from PIL import Image

from hpml_bench.data.shapes import generate_shapes
from hpml_bench.models import build_model_from_config
from hpml_bench.train.config import compose_train, model_config, to_train_config

# Every model hpml trains, at its smallest: the tiny variants, the MLP and ResNet-18 (at 16 px).
DEPLOY_MODELS = ["mlp", "resnet18", "hct_tiny", "iformer_tiny", "inception_v3_tiny", "unet_tiny", "fcn_tiny", "segnet_tiny"]


def model_overrides(name: str) -> list[str]:
    cfg = model_config(name)
    size = 16 if name in ("resnet18", "mlp") else cfg.input_size
    return [f"model={name}", f"task={cfg.task}", f"dataset.image_size={size}", "dataset.num_train=32",
            "dataset.num_val=16", "dataset.batch_size=8"]


def make_run(folder: Path, overrides: list[str], seed: int = 0) -> Path:
    """A run folder as `hpml train` leaves it (config.yaml, checkpoints/best.pt), random weights."""
    dcfg = compose_train(overrides)
    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(dcfg, resolve=True))
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
    torch.manual_seed(seed)
    model = build_model_from_config(to_train_config(dcfg).model)
    torch.save({"model": model.state_dict(), "epoch": 1}, folder / "checkpoints" / "best.pt")
    return folder


def write_shape_pngs(folder: Path, sizes: list[int], seed: int = 5, grey: bool = False) -> list[Path]:
    """Generated shapes saved as PNGs, one per size (sizes other than the model's get resized)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, size in enumerate(sizes):
        image = generate_shapes(1, size, 0.08, seed + i)[0][0].permute(1, 2, 0).numpy()
        pil = Image.fromarray(np.ascontiguousarray(image))
        path = folder / f"img{i:02d}_{size}.png"
        (pil.convert("L") if grey else pil).save(path)
        paths.append(path)
    return paths


def parse_lines(text: str) -> dict[str, list[tuple[str, float]]]:
    """`path class:p class:p` lines -> {file name: [(class, p), ...]}."""
    result = {}
    for line in text.strip().splitlines():
        path, *pairs = line.split()
        result[Path(path).name] = [(name, float(p)) for name, p in (pair.rsplit(":", 1) for pair in pairs)]
    return result


# A user's own model (mynet.py), as the user-project tests and benchmarks/outside_models_export.py write it.
USER_MYNET = '''
import torch
from torch import nn

class MyNet(nn.Module):
    def __init__(self, num_classes, in_channels=3, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(torch.flatten(self.body(self.features(x)), 1))
'''
