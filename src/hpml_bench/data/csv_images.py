"""`csv_images`: images listed in CSV files with their labels.

Presets: `hct` (the HCT student's image_labels.csv / image_labels_valid.csv: space-delimited
`<path> <label>`, no header) and `retinopathy` (Kaggle EyePACS trainLabels.csv: `image,level`,
images train/<image>.jpeg; `retinopathy_cropped` for the resized trainLabels_cropped.csv).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
class CsvImagesConfig(FileDatasetConfig):
    name: str = "csv_images"
    train_csv: str = "labels.csv"  # relative to root
    val_csv: Optional[str] = None  # null: a seeded val_fraction split of train_csv
    delimiter: str = ","  # the CSV's separator (' ' for space-delimited lists)
    header: bool = True  # the first row names the columns
    # Columns by name (header) or by 0-based position (no header).
    path_column: str = "0"
    label_column: str = "1"  # the label column, by name (header) or 0-based position
    image_dir: str = ""  # relative to root; prefixed to each path
    image_suffix: str = ""  # appended to each path, e.g. ".jpeg"
    source: str = "a CSV of <image path>,<label> rows"  # where the data comes from (shown by hpml list datasets)


def _read_csv(cfg: CsvImagesConfig, root: Path, name: str) -> list[Sample]:
    file = root / name
    if not file.is_file():
        raise HpmlError(f"{file} not found; dataset={cfg.name} expects {name} under dataset.root (from {cfg.source})")
    import pandas as pd  # here: only this data set reads CSV files, and pandas costs ~0.3 s of start-up

    sep = r"\s+" if cfg.delimiter in (" ", "space", "whitespace") else cfg.delimiter
    table = pd.read_csv(file, sep=sep, header=0 if cfg.header else None, dtype=str, keep_default_na=False)
    columns = [_column(cfg, table, key) for key in ("path_column", "label_column")]
    samples = []
    for line, (path, label) in enumerate(zip(table[columns[0]], table[columns[1]]), start=2 if cfg.header else 1):
        image = root / cfg.image_dir / f"{path}{cfg.image_suffix}"
        if not image.is_file():
            raise HpmlError(f"{file} line {line} names {image}, which does not exist; fix the CSV or dataset.image_dir")
        try:
            samples.append(Sample(image, int(label)))
        except ValueError:
            raise HpmlError(f"{file} line {line}: label {label!r} is not an integer") from None
    return samples


def _column(cfg: CsvImagesConfig, table, key: str):
    name = getattr(cfg, key)
    if name in table.columns:
        return name
    if name.isdigit() and int(name) in table.columns:
        return int(name)
    raise HpmlError(f"dataset.{key}={name} is not a column of the CSV (columns: {', '.join(map(str, table.columns))})")


@DATASETS.register("csv_images", config=CsvImagesConfig)
def build_csv_images(cfg: CsvImagesConfig, task: str):
    if task != "classification":
        raise HpmlError(f"dataset={cfg.name} has class labels only; use task=classification")
    root = require_root(cfg, cfg.train_csv, cfg.source)
    train = _read_csv(cfg, root, cfg.train_csv)
    val = _read_csv(cfg, root, cfg.val_csv) if cfg.val_csv else None
    if val is None:
        train, val = seeded_split(train, cfg.val_fraction, cfg.split_seed)
    for split in (train, val):
        check_labels(split, cfg.num_classes, cfg.train_csv)
    return FileImages(train, cfg, task, train=True), FileImages(val, cfg, task, train=False)
