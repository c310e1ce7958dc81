"""`dataset=seg_folder`: every mask convention decodes to the class maps it was written from;
splits from folders or val_fraction; classes from classes.txt; bad data is one line, exit 2."""
from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_data import make_seg_folder, seg_mask_values
from PIL import Image

from hpml_bench.data import build_datasets
from hpml_bench.errors import HpmlError
from hpml_bench.models import build_model_from_config, count_parameters
from hpml_bench.train.config import compose_train, to_train_config
from hpml_bench.train.trained_run import class_names


def _config(root, *extra):
    return to_train_config(compose_train(["model=unet_tiny", "dataset=seg_folder", f"dataset.root={root}", *extra]))


@pytest.mark.parametrize("convention, classes", [("index", 3), ("binary", 2), ("colour", 4), ("palette", 3)])
def test_every_mask_convention_reads_as_class_maps(tmp_path, convention, classes):
    expected = make_seg_folder(tmp_path, convention, classes, size=20, per_split=4)
    cfg = _config(tmp_path, *([seg_mask_values(classes)] if convention == "colour" else []))
    assert cfg.dataset.mask_classes == cfg.model.num_classes == classes  # from classes.txt
    assert cfg.dataset.native_size == 20 and cfg.dataset.image_size == 32  # unet_tiny needs 32: the input-size rule
    train, val = build_datasets(cfg.dataset, "segmentation")
    assert (len(train), len(val)) == (4, 4)
    for ds in (train, val):
        for sample in ds.samples:
            assert np.array_equal(ds.read_mask(sample.mask).numpy(), expected[sample.image]), sample.mask
    image, mask = val[0]  # through the decode path: resized jointly, nearest for the mask
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    assert set(mask.unique().tolist()) <= set(range(classes)) and len(mask.unique()) > 1
    assert class_names(cfg) == ["background", "red", "green", "blue"][:classes]


def test_grey_levels_map_through_mask_values(tmp_path):
    expected = make_seg_folder(tmp_path, "index", 3, size=16, per_split=2, classes_txt=False)
    for image, target in expected.items():  # rewrite the masks as grey levels 0 / 100 / 200
        mask = image.parent.parent / "masks" / f"{image.stem}.png"
        Image.fromarray((target * 100).astype(np.uint8)).save(mask)
    cfg = _config(tmp_path, "dataset.mask_values=[0,100,200]")
    assert cfg.dataset.mask_classes == 3 and class_names(cfg) == ["0", "1", "2"]
    train, _ = build_datasets(cfg.dataset, "segmentation")
    assert all(np.array_equal(train.read_mask(s.mask).numpy(), expected[s.image]) for s in train.samples)


def test_splits_from_folders_or_val_fraction(tmp_path):
    with_val = make_seg_folder(tmp_path / "a", splits=("train", "val"), per_split=5, size=16)
    train, val = build_datasets(_config(tmp_path / "a").dataset, "segmentation")
    assert {s.image.parent.parent.name for s in val.samples} == {"val"} and len(train) == 5
    # No val/ folder: a seeded val_fraction split of train/; a flat images/ + masks/ folder too.
    make_seg_folder(tmp_path / "b", splits=("train",), per_split=12, size=16)
    make_seg_folder(tmp_path / "c", splits=("x", "y"), per_split=6, size=16, flat=True)
    for root in (tmp_path / "b", tmp_path / "c"):
        cfg = _config(root, "dataset.val_fraction=0.25", "dataset.split_seed=3").dataset
        train, val = build_datasets(cfg, "segmentation")
        names = [{s.image.name for s in ds.samples} for ds in (train, val)]
        assert (len(train), len(val)) == (9, 3) and not names[0] & names[1]
        again = build_datasets(cfg, "segmentation")[1]
        assert [s.image for s in again.samples] == [s.image for s in val.samples]  # seeded
    assert len(with_val) == 10


def test_without_classes_txt_two_classes_by_default(tmp_path):
    make_seg_folder(tmp_path, "binary", 2, size=16, per_split=2, classes_txt=False)
    cfg = _config(tmp_path)
    assert cfg.dataset.mask_classes == 2 and class_names(cfg) == ["background", "foreground"]
    with pytest.raises(HpmlError, match="classes.txt gives 3 classes but dataset.mask_classes=4"):
        (tmp_path / "classes.txt").write_text("a\nb\nc\n")
        _config(tmp_path, "dataset.mask_classes=4")


def test_without_classes_txt_the_masks_say_how_many_classes(tmp_path, capsys):
    """Index masks with values 0..4 and nothing else saying it: five classes, said once."""
    make_seg_folder(tmp_path / "five", "index", 5, size=16, per_split=3, classes_txt=False)
    make_seg_folder(tmp_path / "pal", "palette", 3, size=16, per_split=2, classes_txt=False, flat=True)
    capsys.readouterr()
    first, again = _config(tmp_path / "five"), _config(tmp_path / "five")
    assert first.dataset.mask_classes == again.dataset.mask_classes == first.model.num_classes == 5
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: dataset.mask_classes=")]
    assert notes == [(f"note: dataset.mask_classes=5: read from 6 masks in {tmp_path / 'five' / 'train' / 'masks'}, "
                      f"{tmp_path / 'five' / 'val' / 'masks'} (values up to 4); set dataset.mask_classes (or write "
                      f"classes.txt) to say otherwise")]
    assert _config(tmp_path / "pal").dataset.mask_classes == 3  # a flat folder's palette indices
    train, _ = build_datasets(first.dataset, "segmentation")
    assert int(max(train.read_mask(s.mask).max() for s in train.samples)) == 4  # every class readable
    capsys.readouterr()
    assert _config(tmp_path / "five", "dataset.mask_classes=6").dataset.mask_classes == 6  # given: no scan, no note
    assert "note:" not in capsys.readouterr().err


def test_hpml_train_says_the_mask_classes_it_inferred(hpml, tmp_path):
    """Through `hpml train`: no classes.txt, no dataset.mask_classes; masks 0..3 train a
    four-class model, and the run says so once."""
    make_seg_folder(tmp_path / "four", "index", 4, size=16, per_split=2, classes_txt=False)
    result = hpml("train", "model=unet_tiny", "dataset=seg_folder", f"dataset.root={tmp_path / 'four'}",
                  "dataset.batch_size=2", "trainer.epochs=1", "trainer.checkpoint_every=0", "trainer.progress=never",
                  "run_dir=r")
    assert result.rc == 0, result.err
    notes = [line for line in result.err.splitlines() if line.startswith("note: dataset.mask_classes=")]
    assert len(notes) == 1 and notes[0].startswith("note: dataset.mask_classes=4: read from 4 masks in "), result.err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    four, two = (_config(tmp_path / "four", f"dataset.mask_classes={n}").model for n in (4, 2))
    assert summary["parameters"] == count_parameters(build_model_from_config(four)) != count_parameters(
        build_model_from_config(two))  # the head the run trained has four outputs


def test_colour_masks_without_mask_values_are_one_line_before_the_run(hpml, tmp_path):
    make_seg_folder(tmp_path / "c", "colour", 3, size=16, per_split=2, classes_txt=False)
    result = hpml("train", "model=unet_tiny", "dataset=seg_folder", f"dataset.root={tmp_path / 'c'}")
    assert result.rc == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "is a colour image; map its colours to classes with dataset.mask_values" in result.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage, message", [
    ("value", "holds value 7, outside classes 0..2 of dataset seg_folder"),
    ("no_mask", "has no mask"),
    ("colour", "is a colour image; map its colours to classes with dataset.mask_values"),
    ("unlisted", "holds colour [9, 9, 9], which dataset.mask_values does not list"),
    ("no_masks_dir", "has no masks/ folder beside it"),
])
def test_bad_data_is_one_line_naming_the_file(hpml, tmp_path, damage, message):
    root = tmp_path / "data"
    expected = make_seg_folder(root, "colour" if damage == "unlisted" else "index", 3, size=16, per_split=3)
    victim = sorted(expected)[1]
    mask = victim.parent.parent / "masks" / f"{victim.stem}.png"
    extra = []
    if damage == "value":
        Image.fromarray(np.full((16, 16), 7, np.uint8)).save(mask)
    elif damage == "no_mask":
        mask.unlink()
    elif damage == "colour":
        Image.fromarray(np.dstack([expected[victim] * 80, expected[victim], expected[victim]]).astype(np.uint8)).save(mask)
    elif damage == "unlisted":
        Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(mask)
        extra = [seg_mask_values(3)]
    else:
        for m in (root / "train" / "masks").iterdir():
            m.unlink()
        (root / "train" / "masks").rmdir()
    result = hpml("prepare", "model=unet_tiny", "dataset=seg_folder", f"dataset.root={root}", *extra)
    err = result.err.strip()
    assert result.rc == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, result.err
    assert message in err
    named = victim if damage == "no_mask" else mask if damage != "no_masks_dir" else root / "train" / "images"
    assert str(named) in err
    assert not (root / ".hpml-cache" / "seg_folder-segmentation").exists()  # no half-built cache


def test_seg_folder_needs_a_segmentation_task(hpml, tmp_path):
    make_seg_folder(tmp_path / "d", size=16, per_split=2)
    result = hpml("train", "model=resnet18", "dataset=seg_folder", f"dataset.root={tmp_path / 'd'}", "task=classification")
    assert result.rc == 2 and "dataset=seg_folder has masks: use task=segmentation" in result.err
