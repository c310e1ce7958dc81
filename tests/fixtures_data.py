"""Small data sets in the seeds' on-disk layouts, generated inside the tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(rng, size) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def make_image_folder(root: Path, splits=("train", "test"), classes=3, per_class=4, size=40, seed=0) -> Path:
    """root/<split>/class<k>/img<N>.png (the CIFAR-10-128 Kaggle layout)."""
    rng = np.random.default_rng(seed)
    n = 0
    for split in splits:
        for k in range(classes):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for _ in range(per_class):
                _rgb(rng, size).save(folder / f"img{n}.png")
                n += 1
    return root


def make_hct_lists(root: Path, per_class=3, size=48) -> Path:
    """dataset/{train,valid}/<Class>/*.png plus space-delimited image_labels*.csv, no header."""
    rng = np.random.default_rng(1)
    for split, csv in (("train", "image_labels.csv"), ("valid", "image_labels_valid.csv")):
        lines = []
        for label, cls in enumerate(("Animal", "Building", "Mountain", "Street")):
            folder = root / "dataset" / split / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _rgb(rng, size).save(folder / f"{i}.png")
                lines.append(f"dataset/{split}/{cls}/{i}.png {label}")
        (root / csv).write_text("\n".join(lines) + "\n")
    return root


def make_retinopathy(root: Path, n=10, size=64) -> Path:
    """trainLabels.csv (image,level) and train/<image>.jpeg."""
    rng = np.random.default_rng(2)
    (root / "train").mkdir(parents=True, exist_ok=True)
    rows = ["image,level"]
    for i in range(n):
        name = f"{10 + i}_{'left' if i % 2 else 'right'}"
        _rgb(rng, size).save(root / "train" / f"{name}.jpeg")
        rows.append(f"{name},{i % 5}")
    (root / "trainLabels.csv").write_text("\n".join(rows) + "\n")
    return root


def make_lgg(root: Path, patients=5, slices=3, size=32, nested=False) -> Path:
    """kaggle_3m/TCGA_*/<folder>_<k>.tif (RGB) + <folder>_<k>_mask.tif (0/255)."""
    rng = np.random.default_rng(3)
    base = root / ("lgg-mri-segmentation" if nested else "") / "kaggle_3m"
    for p in range(patients):
        folder = base / f"TCGA_CS_{4941 + p}_1996090{p}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(1, slices + 1):
            _rgb(rng, size).save(folder / f"{folder.name}_{k}.tif")
            mask = np.zeros((size, size), dtype=np.uint8)
            if k % 2:
                mask[size // 4: size // 2, size // 4: size // 2] = 255
            Image.fromarray(mask).save(folder / f"{folder.name}_{k}_mask.tif")
    return root
