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


# Class k's colour in the generated segmentation images (and in "colour" masks): learnable from one pixel.
SEG_COLOURS = ((0, 0, 0), (220, 40, 40), (40, 200, 60), (50, 80, 230), (230, 210, 40))
MASK_CONVENTIONS = ("index", "binary", "colour", "palette")


def seg_mask_values(classes: int) -> str:
    """The `dataset.mask_values=...` override that maps make_seg_folder's colour masks to classes."""
    return "dataset.mask_values=[" + ",".join(f"[{r},{g},{b}]" for r, g, b in SEG_COLOURS[:classes]) + "]"


def make_seg_folder(root: Path, convention: str = "index", classes: int = 3, splits=("train", "val"), per_split: int = 8,
                    size: int = 32, seed: int = 0, classes_txt: bool = True, flat: bool = False,
                    image_ext: str = ".png") -> dict[Path, np.ndarray]:
    """A seg_folder tree: root/<split>/images/img<N><ext> + root/<split>/masks/img<N>.png (flat:
    root/images + root/masks, per_split x len(splits) pairs), and classes.txt. Each image is a
    noisy dark background with one rectangle per foreground class in that class's colour.
    Masks by `convention`: index (value k), binary (0/255, two classes), colour (SEG_COLOURS[k]
    as RGB; train with seg_mask_values(classes)), palette (a P-mode PNG, index k).
    Returns {image path: the class map [size, size] its mask means}."""
    assert convention in MASK_CONVENTIONS and (convention != "binary" or classes == 2)
    rng = np.random.default_rng(seed)
    expected = {}
    folders = [root] * len(splits) if flat else [root / s for s in splits]
    n = 0
    for folder in folders:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for _ in range(per_split):
            image = rng.integers(0, 70, (size, size, 3)).astype(np.int16)
            target = np.zeros((size, size), dtype=np.uint8)
            for k in range(1, classes):
                h, w = rng.integers(size // 4, size // 2 + 1, 2)
                top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
                target[top:top + h, left:left + w] = k
            for k in range(1, classes):
                image[target == k] = np.asarray(SEG_COLOURS[k]) + rng.integers(-15, 16, (int((target == k).sum()), 3))
            path = folder / "images" / f"img{n:03d}{image_ext}"
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path)
            _save_mask(target, folder / "masks" / f"img{n:03d}.png", convention)
            expected[path] = target
            n += 1
    if classes_txt:
        (root / "classes.txt").write_text("\n".join(["background", "red", "green", "blue", "yellow"][:classes]) + "\n")
    return expected


def _save_mask(target: np.ndarray, path: Path, convention: str) -> None:
    if convention == "index":
        Image.fromarray(target).save(path)
    elif convention == "binary":
        Image.fromarray(target * 255).save(path)
    elif convention == "colour":
        Image.fromarray(np.asarray(SEG_COLOURS, dtype=np.uint8)[target]).save(path)
    else:  # palette: indices with the class colours as the palette (the VOC style)
        mask = Image.fromarray(target, mode="P")
        mask.putpalette([c for colour in SEG_COLOURS for c in colour] + [0] * (768 - 3 * len(SEG_COLOURS)))
        mask.save(path)
