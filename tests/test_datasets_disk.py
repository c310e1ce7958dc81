"""The seeds' data sets in their on-disk layouts: reading, splits, transforms, errors, cache."""

import numpy as np
import pytest
import torch
from conftest import only_run_folder, read_run
from fixtures_data import make_hct_lists, make_image_folder, make_lgg, make_retinopathy
from omegaconf import OmegaConf
from PIL import Image

from hpml_bench.data import build_datasets
from hpml_bench.data import cache as cache_mod
from hpml_bench.data.cache import cache_folder, load_cache, prepare_cache
from hpml_bench.errors import HpmlError
from hpml_bench.train.config import compose_train

QUICK = ["trainer.epochs=1", "dataset.batch_size=4", "dataset.image_size=32", "trainer.progress=never"]


def dataset_cfg(*overrides):
    return OmegaConf.to_object(compose_train(list(overrides)).dataset)


def test_image_folder_reads_classes_and_its_test_split(tmp_path):
    make_image_folder(tmp_path / "c", classes=3, per_class=4)
    train, val = build_datasets(dataset_cfg("dataset=cifar10_128", f"dataset.root={tmp_path / 'c'}",
                                            "dataset.num_classes=3", "dataset.image_size=16"), "classification")
    assert (len(train), len(val)) == (12, 12)
    assert sorted(s.label for s in train.samples) == [0] * 4 + [1] * 4 + [2] * 4
    x, y = train[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.item() in (0, 1, 2)


def test_image_folder_without_test_split_takes_a_seeded_fraction(tmp_path):
    make_image_folder(tmp_path / "c", splits=("train",), classes=2, per_class=10)
    cfg = dataset_cfg("dataset=image_folder", f"dataset.root={tmp_path / 'c'}", "dataset.num_classes=2",
                      "dataset.val_fraction=0.2")
    train, val = build_datasets(cfg, "classification")
    again, _ = build_datasets(cfg, "classification")
    assert (len(train), len(val)) == (16, 4)
    assert [s.image for s in train.samples] == [s.image for s in again.samples]
    assert not {s.image for s in train.samples} & {s.image for s in val.samples}


def test_hct_and_retinopathy_csv_presets(tmp_path):
    make_hct_lists(tmp_path / "hct")
    train, val = build_datasets(dataset_cfg("dataset=hct", f"dataset.root={tmp_path / 'hct'}"), "classification")
    assert (len(train), len(val)) == (12, 12)
    assert [s.label for s in train.samples] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert train.samples[3].image == tmp_path / "hct" / "dataset" / "train" / "Building" / "0.png"
    make_retinopathy(tmp_path / "ret", n=10)
    train, val = build_datasets(dataset_cfg("dataset=retinopathy", f"dataset.root={tmp_path / 'ret'}"), "classification")
    assert len(train) + len(val) == 10 and len(val) == 1
    labels = {s.image.stem: s.label for s in train.samples + val.samples}
    assert labels["10_right"] == 0 and labels["14_right"] == 4


@pytest.mark.parametrize("nested", [False, True])
def test_lgg_mri_pairs_masks_and_splits_by_patient(tmp_path, nested):
    make_lgg(tmp_path / "lgg", patients=5, slices=3, nested=nested)
    train, val = build_datasets(dataset_cfg("dataset=lgg_mri", f"dataset.root={tmp_path / 'lgg'}",
                                            "dataset.image_size=16"), "segmentation")
    assert (len(train), len(val)) == (12, 3)
    patient = lambda s: s.image.parent.name
    assert not {patient(s) for s in train.samples} & {patient(s) for s in val.samples}
    assert all(s.mask.name == s.image.name.replace(".tif", "_mask.tif") for s in train.samples)
    x, m = train[0]
    assert x.shape == (3, 16, 16) and m.shape == (16, 16) and m.dtype == torch.int64
    assert set(torch.cat([train[i][1].flatten() for i in range(len(train))]).unique().tolist()) == {0, 1}


def test_flip_moves_image_and_mask_together(tmp_path):
    make_lgg(tmp_path / "lgg", patients=2, slices=1, size=16)
    cfg = dataset_cfg("dataset=lgg_mri", f"dataset.root={tmp_path / 'lgg'}", "dataset.image_size=16")
    train, _ = build_datasets(cfg, "segmentation")
    plain, _ = build_datasets(dataset_cfg("dataset=lgg_mri", f"dataset.root={tmp_path / 'lgg'}",
                                          "dataset.image_size=16", "dataset.augment=false"), "segmentation")
    x0, m0 = plain[0]
    seen = set()
    for seed in range(20):
        torch.manual_seed(seed)
        x, m = train[0]
        flipped = torch.equal(x, x0.flip(-1))
        assert torch.equal(m, m0.flip(-1) if flipped else m0)
        seen.add(flipped)
    assert seen == {True, False}


def _write_bad_tif(path):
    path.write_bytes(b"this is not a tif")


@pytest.mark.parametrize("breakage, message", [
    ("no_root", "dataset.root=nowhere does not exist; expected kaggle_3m/TCGA_*"),
    ("no_patients", "holds no TCGA_* patient folders"),
    ("image_without_mask", "has no mask"),
    ("mask_without_image", "has no image"),
    ("mask_size", "masks must match their images"),
    ("corrupt", "cannot read image"),
])
def test_lgg_mistakes_are_one_line_errors(hpml, tmp_path, breakage, message):
    root = make_lgg(tmp_path / "lgg", patients=3, slices=2)
    folder = next((root / "kaggle_3m").glob("TCGA_*"))
    if breakage == "no_root":
        root = "nowhere"
    elif breakage == "no_patients":
        root = tmp_path / "empty"
        root.mkdir()
    elif breakage == "image_without_mask":
        next(folder.glob("*_1_mask.tif")).unlink()
    elif breakage == "mask_without_image":
        (folder / f"{folder.name}_1.tif").unlink()
    elif breakage == "mask_size":
        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(folder / f"{folder.name}_1_mask.tif")
    elif breakage == "corrupt":
        for f in (root / "kaggle_3m").glob("TCGA_*/*_1.tif"):
            _write_bad_tif(f)
    result = hpml("train", "model=unet_tiny", "dataset=lgg_mri", f"dataset.root={root}", *QUICK)
    assert result.rc == 2, result.err
    assert message in result.err and result.err.startswith("error: ")
    assert len(result.err.strip().splitlines()) == 1


def test_corrupt_images_can_be_skipped_and_are_named(hpml, tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "c", classes=2, per_class=4)
    bad = root / "train" / "class0" / "img0.png"
    bad.write_bytes(b"\x89PNG broken")
    for workers in (0, 1):  # raised in this process, or in a loader worker
        strict = hpml("train", "dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=2", *QUICK,
                      f"dataset.num_workers={workers}")
        assert strict.rc == 2 and str(bad) in strict.err and "dataset.on_corrupt=skip" in strict.err
        assert len(strict.err.strip().splitlines()) == 1, strict.err
    monkeypatch.setenv("HPML_RUN_ID", "skip")
    skip = hpml("train", "dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=2",
                "dataset.on_corrupt=skip", *QUICK)
    assert skip.rc == 0, skip.err
    assert f"skipping unreadable image {bad}" in skip.err
    epochs, _ = read_run(tmp_path / "runs" / "skip")
    assert epochs["samples"].iloc[0] == 7


@pytest.mark.parametrize("setup, args, message", [
    ("hct_missing_file", ["dataset=hct"], "which does not exist"),
    ("hct_bad_label", ["dataset=hct"], "label 7 of"),
    ("too_many_classes", ["dataset=image_folder", "dataset.num_classes=2"], "set dataset.num_classes=3"),
    ("empty_split", ["dataset=image_folder", "dataset.num_classes=3"], "the validation split is empty"),
    ("no_csv", ["dataset=retinopathy"], "trainLabels.csv not found"),
])
def test_layout_mistakes_are_one_line_errors(hpml, tmp_path, setup, args, message):
    root = tmp_path / "d"
    if setup.startswith("hct"):
        make_hct_lists(root)
        lines = (root / "image_labels.csv").read_text().splitlines()
        lines[0] = "dataset/train/Animal/missing.png 0" if setup == "hct_missing_file" else lines[0].replace(" 0", " 7")
        (root / "image_labels.csv").write_text("\n".join(lines) + "\n")
    elif setup == "too_many_classes":
        make_image_folder(root, classes=3)
    elif setup == "empty_split":
        make_image_folder(root, classes=3)
        for f in (root / "test").rglob("*.png"):
            f.unlink()
    elif setup == "no_csv":
        root.mkdir()
    result = hpml("train", *args, f"dataset.root={root}", *QUICK)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err


def test_cache_holds_the_same_tensors_as_the_decode_path(tmp_path):
    make_lgg(tmp_path / "lgg", patients=3, slices=2)
    args = ["dataset=lgg_mri", f"dataset.root={tmp_path / 'lgg'}", "dataset.image_size=16", "dataset.augment=false"]
    index = prepare_cache(dataset_cfg(*args), "segmentation")
    assert index["splits"]["train"]["count"] + index["splits"]["val"]["count"] == 6
    decoded, _ = build_datasets(dataset_cfg(*args), "segmentation")
    cached, _ = build_datasets(dataset_cfg(*args, "dataset.cache=true"), "segmentation")
    assert len(cached) == len(decoded)
    for i in range(len(decoded)):
        (a, ma), (b, mb) = decoded[i], cached[i]
        assert torch.equal(a, b) and torch.equal(ma, mb)


def test_cache_built_with_other_settings_is_refused(tmp_path):
    make_image_folder(tmp_path / "c", classes=2)
    base = ["dataset=image_folder", f"dataset.root={tmp_path / 'c'}", "dataset.num_classes=2"]
    with pytest.raises(HpmlError, match="there is no cache"):
        build_datasets(dataset_cfg(*base, "dataset.cache=true"), "classification")
    prepare_cache(dataset_cfg(*base, "dataset.image_size=16"), "classification")
    with pytest.raises(HpmlError, match=r"image_size=16 \(run asks 24\)"):
        build_datasets(dataset_cfg(*base, "dataset.image_size=24", "dataset.cache=true"), "classification")
    # loader knobs and augmentation do not change what the cache holds
    build_datasets(dataset_cfg(*base, "dataset.image_size=16", "dataset.cache=true", "dataset.num_workers=2",
                               "dataset.augment=false"), "classification")


def test_interrupted_prepare_leaves_the_old_cache_and_no_half_one(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "c", classes=2)
    base = ["dataset=image_folder", f"dataset.root={tmp_path / 'c'}", "dataset.num_classes=2", "dataset.image_size=16"]
    prepare_cache(dataset_cfg(*base), "classification")
    folder = cache_folder(dataset_cfg(*base), "classification")
    before = (folder / "index.json").read_text()
    original = cache_mod._write_split

    def interrupted(source, tmp, split, workers):
        if split == "val":
            raise KeyboardInterrupt
        return original(source, tmp, split, workers)

    monkeypatch.setattr(cache_mod, "_write_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(dataset_cfg(*base, "dataset.image_size=24"), "classification")
    assert (folder / "index.json").read_text() == before
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left
    load_cache(dataset_cfg(*base, "dataset.cache=true"), "classification")


def test_prepare_command_then_train_from_cache(hpml, tmp_path):
    make_lgg(tmp_path / "lgg", patients=3, slices=2)
    args = ["dataset=lgg_mri", f"dataset.root={tmp_path / 'lgg'}", "dataset.image_size=32"]
    result = hpml("prepare", *args)
    assert result.rc == 0, result.err
    assert "train: 4 samples" in result.out and "dataset.cache=true" in result.out
    result = hpml("train", "model=unet_tiny", *args, "dataset.cache=true", "trainer.epochs=1", "trainer.progress=never")
    assert result.rc == 0, result.err


@pytest.mark.parametrize("maker, args", [
    (make_image_folder, ["dataset=cifar10_128", "dataset.num_classes=3"]),
    (make_hct_lists, ["dataset=hct", "model=hct_tiny"]),
    (make_retinopathy, ["dataset=retinopathy", "model=inception_v3_tiny", "dataset.image_size=75"]),
    (make_lgg, ["dataset=lgg_mri", "model=segnet_tiny"]),
])
def test_train_on_each_layout(hpml, tmp_path, maker, args):
    root = maker(tmp_path / "data")
    result = hpml("train", *args, f"dataset.root={root}", *QUICK[:2], "trainer.progress=never",
                  *([] if any(a.startswith("dataset.image_size") for a in args) else ["dataset.image_size=32"]))
    assert result.rc == 0, result.err
    epochs, _ = read_run(only_run_folder(tmp_path))
    assert epochs["samples"].iloc[0] > 0


def test_data_stall_warning_names_the_knobs(hpml, tmp_path):
    # large PNGs, a tiny model: decoding (even with torchvision.io) must dominate the epoch
    root = make_image_folder(tmp_path / "c", classes=2, per_class=8, size=448)
    result = hpml("train", "dataset=image_folder", f"dataset.root={root}", "dataset.num_classes=2",
                  "model=mlp", "dataset.image_size=8", "trainer.epochs=2", "trainer.progress=never")
    assert result.rc == 0
    assert result.err.count("waiting for data") == 1 and "dataset.num_workers" in result.err


def test_data_stall_advice_on_the_cache_does_not_ask_for_the_cache_or_workers():
    from types import SimpleNamespace

    from hpml_bench.callbacks.data_stall import DataStallWarning

    cached = SimpleNamespace(dataset=SimpleNamespace(in_process=True), num_workers=0)
    decoded = SimpleNamespace(dataset=SimpleNamespace(), num_workers=0)
    assert "cache=true" not in DataStallWarning._advice(cached) and "num_workers" not in DataStallWarning._advice(cached)
    assert "dataset.num_workers (now 0)" in DataStallWarning._advice(decoded)
