"""`image_folder`: a torchvision ImageFolder tree per split, e.g. Kaggle's
"cifar10-128x128-resized-via-cai-super-resolution": root/{train,test}/class<k>/img<N>.png."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from hpml_bench.data.base import DATASETS
from hpml_bench.data.files import (
    FileDatasetConfig,
    FileImages,
    Sample,
    check_labels,
    require_root,
    seeded_split,
)
from hpml_bench.errors import HpmlError


@dataclass
class ImageFolderConfig(FileDatasetConfig):
    name: str = "image_folder"
    train_dir: str = "train"  # training split, relative to root
    val_dir: Optional[str] = "test"  # null or missing: a seeded val_fraction split of train_dir
    source: str = "any torchvision ImageFolder tree (root/<split>/<class>/<image>)"  # where the data comes from (shown by hpml list datasets)

    def class_names(self, task: str):
        folder = Path(self.root or "") / self.train_dir
        return find_classes(str(folder))[0] if self.root and folder.is_dir() else None


def _samples(folder: Path) -> tuple[list[Sample], list[str]]:
    classes, class_to_idx = find_classes(str(folder))
    # torchvision lists the files (any image extension), labels by sorted class folder.
    items = make_dataset(str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=True)
    return [Sample(Path(path), label) for path, label in items], classes


@DATASETS.register("image_folder", config=ImageFolderConfig)
def build_image_folder(cfg: ImageFolderConfig, task: str):
    if task != "classification":
        raise HpmlError(f"dataset={cfg.name} has class labels only; use task=classification")
    expected = f"{cfg.train_dir}/<class>/<image> folders"
    root = require_root(cfg, expected, cfg.source)
    if not (root / cfg.train_dir).is_dir():
        raise HpmlError(f"dataset.root={cfg.root} has no {cfg.train_dir}/ folder; expected {expected} (from {cfg.source})")
    train, classes = _samples(root / cfg.train_dir)
    if len(classes) > cfg.num_classes:
        raise HpmlError(f"{root / cfg.train_dir} has {len(classes)} class folders but dataset.num_classes="
                        f"{cfg.num_classes}; set dataset.num_classes={len(classes)}")
    if cfg.val_dir and (root / cfg.val_dir).is_dir():
        val, val_classes = _samples(root / cfg.val_dir)
        if val_classes != classes:
            raise HpmlError(f"{root / cfg.val_dir} has classes {val_classes} but {cfg.train_dir}/ has {classes}")
    else:
        train, val = seeded_split(train, cfg.val_fraction, cfg.split_seed)
    check_labels(train, cfg.num_classes, str(root))
    return FileImages(train, cfg, task, train=True), FileImages(val, cfg, task, train=False)
