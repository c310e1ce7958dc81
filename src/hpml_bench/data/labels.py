"""The class labels of a training split, for loss.class_weights=auto and dataset.sampler=balanced:
read from the list a data set keeps (file lists, tensors, the cache's targets) without decoding
an image; a data set that keeps none is read sample by sample (slow, but right)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


def class_labels(ds: Dataset) -> torch.Tensor:
    """int64 [len(ds)]: each sample's class label, in index order, on the CPU."""
    samples = getattr(ds, "samples", None)
    if samples is not None and all(hasattr(s, "label") for s in samples[:1]):  # FileImages' Sample list
        return torch.tensor([s.label for s in samples], dtype=torch.long)
    for name in ("labels", "targets"):  # TensorImages, torchvision's sets, the cache, synthetic tensors
        value = getattr(ds, name, None)
        if value is not None:
            return torch.as_tensor(value).long().cpu()
    return torch.stack([torch.as_tensor(ds[i][1]).long() for i in range(len(ds))])


def class_counts(ds: Dataset, num_classes: int) -> torch.Tensor:
    """int64 [num_classes]: how many training samples each class has."""
    return torch.bincount(class_labels(ds), minlength=num_classes)[:num_classes]
