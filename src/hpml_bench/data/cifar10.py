"""`cifar10`: torchvision's CIFAR-10, downloaded when online, else read from dataset.root."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision import datasets
from torchvision.transforms import v2

from hpml_bench.data.base import DATASETS, DatasetConfig, normalize
from hpml_bench.errors import HpmlError

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FOLDER = datasets.CIFAR10.base_folder  # cifar-10-batches-py


@dataclass
class Cifar10Config(DatasetConfig):
    name: str = "cifar10"
    root: str = "data/cifar10"
    num_classes: int = 10
    native_size: int = 32
    download: bool = True  # download with torchvision when root is empty (needs the network)

    def class_names(self, task: str):
        return list(CIFAR10_CLASSES)


def _files_present(root: str) -> bool:
    names = [name for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list]
    return all((Path(root) / _FOLDER / name).is_file() for name in names)


class _CIFAR10(datasets.CIFAR10):
    """CIFAR-10 that trusts files already on disk instead of hashing 170 MB on every run."""

    def _check_integrity(self) -> bool:
        return _files_present(self.root)

    def _load_meta(self) -> None:
        with open(Path(self.root) / _FOLDER / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def _transform(cfg: Cifar10Config, train: bool) -> v2.Transform:
    augment = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if train and cfg.augment else []
    resize = [v2.Resize(cfg.image_size, antialias=True)] if cfg.image_size != 32 else []
    return v2.Compose([v2.ToImage(), *augment, *resize, v2.ToDtype(torch.float32, scale=True), normalize(3)])


def _ensure_files(cfg: Cifar10Config) -> None:
    if _files_present(cfg.root):
        return
    where = f"put {_FOLDER}/ (torchvision's CIFAR-10 python version) under {Path(cfg.root).resolve()}, or set dataset.root"
    if not cfg.download:
        raise HpmlError(f"CIFAR-10 not found: {where}")
    try:
        datasets.CIFAR10(cfg.root, download=True)
    except Exception as exc:  # offline: URLError, timeouts, ...
        raise HpmlError(f"CIFAR-10 could not be downloaded ({type(exc).__name__}): {where}") from exc


@DATASETS.register("cifar10", config=Cifar10Config)
def build_cifar10(cfg: Cifar10Config, task: str):
    if task != "classification":
        raise HpmlError("dataset=cifar10 has labels only; use task=classification")
    _ensure_files(cfg)
    try:
        train = _CIFAR10(cfg.root, train=True, transform=_transform(cfg, True))
        val = _CIFAR10(cfg.root, train=False, transform=_transform(cfg, False))
    except Exception as exc:  # truncated or foreign pickle files
        raise HpmlError(f"CIFAR-10 files under {cfg.root}/{_FOLDER} could not be read ({exc}); delete them and download again") from exc
    return train, val
