"""`lgg_mri`: Kaggle mateuszbuda/lgg-mri-segmentation — kaggle_3m/TCGA_<...>/<folder>_<k>.tif
with <folder>_<k>_mask.tif (0/255). Split by patient folder, so no patient's slices sit on
both sides (the seed split by slice and leaked)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hpml_bench.data.base import DATASETS
from hpml_bench.data.files import (
    FileDatasetConfig,
    FileImages,
    Sample,
    require_root,
    seeded_split,
)
from hpml_bench.errors import HpmlError

SOURCE = "Kaggle: kaggle datasets download mateuszbuda/lgg-mri-segmentation"
EXPECTED = "kaggle_3m/TCGA_*/<folder>_<k>.tif with <folder>_<k>_mask.tif"


@dataclass
class LggMriConfig(FileDatasetConfig):
    name: str = "lgg_mri"
    num_classes: int = 2
    mask_classes: int = 2
    native_size: int = 256
    val_fraction: float = 0.2

    default_task: ClassVar[str] = "segmentation"


def find_slices_root(root: Path) -> Path:
    """kaggle_3m itself, or the kaggle_3m inside root (also nested as lgg-mri-segmentation/)."""
    for candidate in (root, root / "kaggle_3m", root / "lgg-mri-segmentation" / "kaggle_3m"):
        if candidate.is_dir() and any(candidate.glob("TCGA_*")):
            return candidate
    raise HpmlError(f"dataset.root={root} holds no TCGA_* patient folders; expected {EXPECTED} (from {SOURCE})")


def patient_samples(folder: Path) -> list[Sample]:
    """The folder's (image, mask) pairs in slice order; HpmlError for an unpaired file."""
    masks = {p.name.removesuffix("_mask.tif"): p for p in folder.glob("*_mask.tif")}
    images = {p.stem: p for p in folder.glob("*.tif") if not p.name.endswith("_mask.tif")}
    for stem in images.keys() - masks.keys():
        raise HpmlError(f"image {images[stem]} has no mask {stem}_mask.tif")
    for stem in masks.keys() - images.keys():
        raise HpmlError(f"mask {masks[stem]} has no image {stem}.tif")
    slice_number = lambda stem: int(stem.rsplit("_", 1)[1]) if stem.rsplit("_", 1)[1].isdigit() else 0
    return [Sample(images[s], mask=masks[s]) for s in sorted(images, key=slice_number)]


@DATASETS.register("lgg_mri", config=LggMriConfig)
def build_lgg_mri(cfg: LggMriConfig, task: str):
    if task != "segmentation":
        raise HpmlError("dataset=lgg_mri has tumour masks: use task=segmentation with unet, fcn or segnet")
    slices = find_slices_root(require_root(cfg, EXPECTED, SOURCE))
    patients = sorted(p for p in slices.glob("TCGA_*") if p.is_dir())
    if len(patients) < 2:
        raise HpmlError(f"{slices} has {len(patients)} patient folder(s); a train/validation split needs 2 or more")
    train_patients, val_patients = seeded_split(patients, cfg.val_fraction, cfg.split_seed)
    train = [s for p in train_patients for s in patient_samples(p)]
    val = [s for p in val_patients for s in patient_samples(p)]
    return FileImages(train, cfg, task, train=True), FileImages(val, cfg, task, train=False)
