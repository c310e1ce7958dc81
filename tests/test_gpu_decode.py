"""dataset.decode=gpu: files read by the loader, decoded/resized/augmented on the device. On a
CPU device the same steps run on the CPU and give the decode=cpu path's tensors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from hpml_bench.data import build_datasets
from hpml_bench.data.collate import batch_collate
from hpml_bench.data.device_loader import DeviceLoader
from hpml_bench.data.files import CorruptImage
from hpml_bench.train.config import compose_train


def make_jpeg_folder(root: Path, per_class=5, corrupt=False) -> Path:
    """root/train/class<k>/*.jpg of two sizes (one resize call per size), one PNG (decoded on
    the host, then resized on the device with the rest); smooth images, as photos are."""
    rng = np.random.default_rng(0)
    n = 0
    for k in range(2):
        folder = root / "train" / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = (40, 40) if i % 2 else (36, 52)
            yy, xx = np.mgrid[0:h, 0:w]
            image = np.stack([(xx * rng.uniform(2, 5)) % 256, (yy * rng.uniform(2, 5)) % 256,
                              np.full((h, w), rng.integers(0, 256))], -1).astype(np.uint8)
            suffix = ".png" if n == 3 else ".jpg"
            Image.fromarray(image).save(folder / f"img{n}{suffix}", quality=90)
            n += 1
    if corrupt:
        (root / "train" / "class0" / "img_bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _datasets(root, decode, *extra):
    args = ["dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=2", "dataset.val_dir=null",
            "dataset.val_fraction=0.2", "dataset.image_size=16", "dataset.center_crop=32", f"dataset.decode={decode}",
            *extra]
    return build_datasets(OmegaConf.to_object(compose_train(args).dataset), "classification")


def _device_batches(ds, device="cpu", seed=0):
    torch.manual_seed(seed)
    loader = DataLoader(ds, batch_size=3, collate_fn=batch_collate, num_workers=0)
    return [tuple(t.cpu() for t in b) for b in DeviceLoader(loader, torch.device(device), ds.batch_transform)]


def test_cpu_fallback_equals_the_host_decode_path(tmp_path):
    root = make_jpeg_folder(tmp_path / "d")
    gpu, _ = _datasets(root, "gpu", "dataset.augment=false")
    host, _ = _datasets(root, "cpu", "dataset.augment=false")
    raw = next(iter(DataLoader(gpu, batch_size=3, collate_fn=batch_collate)))
    assert raw[0][0].dim() == 1 and raw[0][0].dtype == torch.uint8  # the loader hands over encoded bytes
    got = _device_batches(gpu)
    assert sum(len(b[0]) for b in got) == len(host) == 8
    for k, (images, targets) in enumerate(got):
        assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.float32
        for j in range(len(images)):
            ref_image, ref_target = host[3 * k + j]
            torch.testing.assert_close(images[j], ref_image, rtol=0, atol=1e-6)
            assert int(targets[j]) == int(ref_target)


def test_flips_per_sample_on_the_device(tmp_path):
    root = make_jpeg_folder(tmp_path / "d", per_class=8)
    gpu, _ = _datasets(root, "gpu")
    host, _ = _datasets(root, "cpu", "dataset.augment=false")
    flipped = []
    for k, (images, _) in enumerate(_device_batches(gpu, seed=3)):
        for j in range(len(images)):
            ref = host[3 * k + j][0]
            assert torch.allclose(images[j], ref, atol=1e-6) or torch.allclose(images[j], ref.flip(-1), atol=1e-6)
            flipped.append(not torch.allclose(images[j], ref, atol=1e-6))
    assert any(flipped) and not all(flipped)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(_device_batches(gpu, seed=3), _device_batches(gpu, seed=3)))


def test_unreadable_jpeg_is_named_or_skipped(tmp_path):
    root = make_jpeg_folder(tmp_path / "d", corrupt=True)
    strict, _ = _datasets(root, "gpu", "dataset.augment=false", "dataset.val_fraction=0.1")
    with pytest.raises(CorruptImage, match="img_bad.jpg"):
        _device_batches(strict)
    skipping, _ = _datasets(root, "gpu", "dataset.augment=false", "dataset.val_fraction=0.1", "dataset.on_corrupt=skip")
    assert sum(len(b[0]) == len(b[1]) and len(b[0]) for b in _device_batches(skipping)) == len(skipping) - 1


def test_decode_gpu_trains_on_a_cpu_device_and_checks_its_settings(hpml, tmp_path):
    root = make_jpeg_folder(tmp_path / "d")
    base = ["dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=2", "dataset.val_dir=null",
            "dataset.val_fraction=0.25", "dataset.image_size=16", "dataset.batch_size=3", "model=mlp",
            "trainer.epochs=1", "trainer.progress=never", "device=cpu", "dataset.decode=gpu"]
    run = hpml("train", *base, f"run_dir={tmp_path / 'run'}")
    assert run.rc == 0, run.err
    assert (tmp_path / "run" / "summary.json").is_file()
    bad = hpml("train", *base, "dataset.decode=nvjpeg")
    assert bad.rc == 2 and "dataset.decode=nvjpeg: use cpu or gpu" in bad.err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CPU fallback runs the same steps)")
def test_nvjpeg_batches_match_the_host_path_within_decoder_tolerance(tmp_path):
    # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's, and CUDA resizes uint8
    # in float where the CPU has an integer kernel: a few grey levels, not bit equality.
    root = make_jpeg_folder(tmp_path / "d")
    gpu, _ = _datasets(root, "gpu", "dataset.augment=false")
    cpu = _device_batches(gpu)
    for (a, ya), (b, yb) in zip(cpu, _device_batches(gpu, device="cuda")):
        assert torch.equal(ya, yb)
        levels = (a - b).abs() * 0.226 * 255  # normalised units -> grey levels (ImageNet std ~0.226)
        assert levels.mean() <= 3.0 and levels.max() <= 40, (levels.mean(), levels.max())
