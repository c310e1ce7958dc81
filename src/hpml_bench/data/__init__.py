"""Data sets: each file registers one in DATASETS; build_loaders makes the loaders."""
from hpml_bench.data import (  # noqa: F401  (registers)
    cache,
    cifar10,
    csv_images,
    digits,
    image_folder,
    lgg_mri,
    seg_folder,
    shapes,
    synthetic,
)
from hpml_bench.data.base import DATASETS, DatasetConfig
from hpml_bench.data.loaders import build_datasets, build_loaders, eval_loader

__all__ = ["DATASETS", "DatasetConfig", "build_datasets", "build_loaders", "eval_loader"]
