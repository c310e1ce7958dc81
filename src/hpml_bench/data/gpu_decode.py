"""dataset.decode=gpu: image files decoded, resized and augmented on the training device.

The loader (its workers, if any) only reads each JPEG's bytes; the batch crosses to the device
encoded (a fraction of the decoded bytes), where `torchvision.io.decode_jpeg(device=...)` decodes
the whole batch at once (nvJPEG on a GPU), the fixed transforms (centre crop, resize) run on
images grouped by size, dataset.augment's per-sample uint8 ops run on each image there (each on
the sample's own seed, which the batch carries), and BatchAugment flips (a lone flip: batched),
converts, normalises. On a CPU device the same steps run on the CPU: the tensors then equal the
decode=cpu path's (tests/test_gpu_decode.py, tests/test_augment_paths.py).
Files that are not JPEG (PNG, TIFF) and grey images (PIL's luma weights) are decoded on the
host, as with decode=cpu, and join the batch before the resize.
"""
from __future__ import annotations

import sys
from collections import defaultdict

import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from hpml_bench.data.batch_transforms import BatchAugment
from hpml_bench.data.collate import Batch
from hpml_bench.data.files import CorruptImage, FileImages, fixed_transform, read_image
from hpml_bench.data.sample_rng import seeds_of
from hpml_bench.errors import HpmlError

_JPEG = (".jpg", ".jpeg")


class EncodedImages(list):
    """A batch's images as the loader hands them over: JPEG bytes (uint8 [N], decoded on the
    device) or host-decoded images (uint8 [C, H, W]); `paths` names them for error messages."""

    paths: list = []


def device_decoded(ds, task: str):
    """The file data set `ds`, its batches decoded on the device; other data sets unchanged
    (the `hpml prepare` cache is already decoded)."""
    if not isinstance(ds, FileImages):
        return ds
    if task != "classification":
        raise HpmlError("dataset.decode=gpu decodes images of task=classification; use dataset.decode=cpu, "
                        "or `hpml prepare` and dataset.cache=true")
    return DeviceDecodedImages(ds)


class DeviceDecodedImages(FileImages):
    """FileImages whose loader reads files only; `batch_transform` decodes on the device."""

    decodes_on_device = True  # (the DataLoader must not pin the batch: encoded bytes are a list)

    def __init__(self, source: FileImages):
        self.__dict__.update(source.__dict__)
        self.batch_transform = DeviceDecode(source)

    def __getitems__(self, indices: list[int]) -> Batch:
        images, paths, labels, kept = EncodedImages(), [], [], []
        for i in indices:
            sample = self.samples[i]
            try:
                if self.cfg.channels == 3 and sample.image.suffix.lower() in _JPEG:
                    images.append(read_file(str(sample.image)))
                else:
                    images.append(read_image(sample.image, self.cfg.channels))
            except (CorruptImage, RuntimeError, OSError) as exc:
                if self.cfg.on_corrupt == "error":
                    raise _corrupt(sample.image) from exc
                print(f"warning: skipping unreadable image {sample.image}", file=sys.stderr)
                continue
            paths.append(sample.image)
            labels.append(sample.label)
            kept.append(i)
        images.paths = paths
        seeds = seeds_of(kept)  # hpml's sampler: each sample's seed, for its ops on the device
        labels = torch.tensor(labels, dtype=torch.int64)
        return Batch((images, labels) if seeds is None else (images, labels, seeds))


class DeviceDecode:
    """(EncodedImages, labels on the device, generator, sample seeds) -> (float images
    [B, C, S, S], labels)."""

    def __init__(self, source: FileImages):
        self.cfg = source.cfg
        self.fixed = fixed_transform(source.cfg)
        self.sample_augment = source.augment
        self.augment = BatchAugment(source.augment)

    def __call__(self, images: EncodedImages, targets: torch.Tensor, generator=None, seeds=None):
        device = targets.device
        decoded = self._decode(images, device)
        keep = [k for k, image in enumerate(decoded) if image is not None]
        if len(keep) < len(decoded):  # on_corrupt=skip: drop what nvJPEG / libjpeg could not decode
            decoded, targets = [decoded[k] for k in keep], targets[torch.as_tensor(keep, device=device)]
            seeds = None if seeds is None else seeds[keep]
        images, targets = self.sample_augment.uint8_batch(self._fixed(decoded, device), targets, seeds, device)
        return self.augment(images, targets, generator, seeds)

    def _decode(self, images: EncodedImages, device: torch.device) -> list:
        decoded = [None if image.dim() == 1 else image for image in images]
        encoded = [k for k, image in enumerate(images) if image.dim() == 1]
        if not encoded:
            return decoded
        try:  # one batched call: nvJPEG decodes the batch together
            out = decode_jpeg([images[k] for k in encoded], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # some file is not a JPEG it can read: find it, one by one
            out = [self._decode_one(images[k], images.paths[k] if images.paths else "?", device) for k in encoded]
        for k, image in zip(encoded, out):
            decoded[k] = image
        return decoded

    def _decode_one(self, data: torch.Tensor, path, device: torch.device):
        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except RuntimeError as exc:
            if self.cfg.on_corrupt == "error":
                raise _corrupt(path) from exc
            print(f"warning: skipping unreadable image {path}", file=sys.stderr)
            return None

    def _fixed(self, decoded: list, device: torch.device) -> torch.Tensor:
        """Centre crop and resize, one call per source size (a resized data set: one call)."""
        by_size = defaultdict(list)
        for k, image in enumerate(decoded):
            by_size[tuple(image.shape)].append(k)
        out = [None] * len(decoded)
        for ks in by_size.values():
            resized = self.fixed(torch.stack([decoded[k].to(device) for k in ks]))
            for k, image in zip(ks, resized):
                out[k] = image
        return torch.stack(out)


def _corrupt(path) -> CorruptImage:
    error = CorruptImage(f"cannot read image {path}; fix or remove it, or set dataset.on_corrupt=skip")
    error.path = path
    return error
