"""`cifar10`: torchvision's CIFAR-10, downloaded when online, else read from dataset.root."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torchvision import datasets
from torchvision.transforms import v2

from hpml_bench.data.base import DATASETS, DatasetConfig
from hpml_bench.data.sample_augment import SampleAugment
from hpml_bench.data.sample_rng import seed_of
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

    default_augment: ClassVar[tuple] = ("pad_crop", "hflip")  # the CIFAR recipe: 4-pixel pad and crop, flip

    def class_names(self, task: str):
        return list(CIFAR10_CLASSES)


def _files_present(root: str) -> bool:
    names = [name for name, _ in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list]
    return all((Path(root) / _FOLDER / name).is_file() for name in names)


class _CIFAR10(datasets.CIFAR10):
    """CIFAR-10 that trusts files already on disk instead of hashing 170 MB on every run, and
    augments each image on its own seed (SampleAugment) instead of torchvision's transform."""

    def __init__(self, root: str, train: bool, cfg: Cifar10Config):
        super().__init__(root, train=train)
        # Resized first (image_size other than 32), so dataset.aug's pixels are the trained image's.
        self.fixed = v2.Resize(cfg.image_size, antialias=True) if cfg.image_size != 32 else None
        self.augment = SampleAugment(cfg, False, train)

    def __getitem__(self, index: int):
        image = torch.from_numpy(self.data[index]).permute(2, 0, 1)  # uint8 [3, 32, 32]
        if self.fixed is not None:
            image = self.fixed(image)
        return self.augment(image, self.targets[index], seed_of(index))  # index: a SampleKey when training

    def _check_integrity(self) -> bool:
        return _files_present(self.root)

    def _load_meta(self) -> None:
        with open(Path(self.root) / _FOLDER / self.meta["filename"], "rb") as f:
            self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


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
        train = _CIFAR10(cfg.root, True, cfg)
        val = _CIFAR10(cfg.root, False, cfg)
    except Exception as exc:  # truncated or foreign pickle files
        raise HpmlError(f"CIFAR-10 files under {cfg.root}/{_FOLDER} could not be read ({exc}); delete them and download again") from exc
    return train, val
