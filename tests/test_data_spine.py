"""The spine's data sets: shapes (generated), synthetic, and CIFAR-10 from a folder on disk."""
import pickle

import numpy as np
import torch
from conftest import only_run_folder, read_run

from hpml_bench.data.shapes import SHAPES, ShapesConfig, build_shapes, generate_shapes


def test_shapes_are_seeded_and_masks_match_labels():
    a = generate_shapes(40, 24, 0.05, seed=3)
    b = generate_shapes(40, 24, 0.05, seed=3)
    c = generate_shapes(40, 24, 0.05, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])
    images, labels, masks = a
    assert images.shape == (40, 3, 24, 24) and images.dtype == torch.uint8
    assert set(labels.tolist()) <= set(range(len(SHAPES)))
    assert set(masks.unique().tolist()) == {0, 1}
    area = masks.float().mean((1, 2))
    assert (area > 0.02).all() and (area < 0.6).all()  # every image holds a visible shape
    # a square fills more of its bounding box than a triangle does
    fill = {k: area[labels == k].mean() for k in range(len(SHAPES)) if (labels == k).any()}
    assert fill[1] > fill[2]


def test_shapes_dataset_gives_labels_or_masks():
    cfg = ShapesConfig(num_train=20, num_val=10, image_size=16)
    train, val = build_shapes(cfg, "classification")
    x, y = val[0]
    assert len(train) == 20 and len(val) == 10 and x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.dim() == 0
    _, seg_val = build_shapes(cfg, "segmentation")
    x, m = seg_val[0]
    assert m.shape == (16, 16) and m.dtype == torch.int64 and set(m.unique().tolist()) <= {0, 1}


def _fake_cifar(root, n_per_batch=20):
    """A tiny CIFAR-10 in torchvision's on-disk format (python pickles)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n_per_batch).tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def test_cifar10_trains_from_a_folder_without_download(hpml, tmp_path):
    _fake_cifar(tmp_path / "cifar")
    result = hpml("train", "dataset=cifar10", "dataset.root=cifar", "dataset.download=false",
                  "dataset.batch_size=25", "trainer.epochs=1", "trainer.progress=never")
    assert result.rc == 0, result.err
    epochs, summary = read_run(only_run_folder(tmp_path))
    assert epochs["samples"].iloc[0] == 100 and summary["dataset"] == "cifar10"


def test_cifar10_truncated_file_is_a_clear_error(hpml, tmp_path):
    _fake_cifar(tmp_path / "cifar")
    (tmp_path / "cifar" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04trunc")
    result = hpml("train", "dataset=cifar10", "dataset.root=cifar", "dataset.download=false", "trainer.epochs=1")
    assert result.rc == 2 and "could not be read" in result.err and "download again" in result.err
