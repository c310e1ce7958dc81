"""`hpml eval`: on the validation split it repeats the run's own validation numbers (a UNet
trained on seg_folder from `hpml prepare`'s cache, a ResNet on shapes); it scores other
splits and folders, exported artifacts, and refuses a split that does not exist."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from conftest import TINY
from fixtures_data import make_seg_folder
from PIL import Image

from hpml_bench.cli.main import main

SEG = ["model=unet_tiny", "dataset=seg_folder", "dataset.batch_size=8", "trainer.epochs=2", "optimizer.lr=0.01",
       "trainer.progress=never"]


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    """unet_tiny trained on a generated seg_folder (train/val/test, 3 classes) from its cache."""
    root = tmp_path_factory.mktemp("eval_seg")
    make_seg_folder(root / "data", "index", 3, splits=("train", "val", "test"), per_split=8, size=32)
    data = [f"dataset.root={root / 'data'}"]
    assert main(["prepare", *SEG, *data]) == 0
    assert main(["train", *SEG, *data, "dataset.cache=true", f"run_dir={root / 'run'}"]) == 0
    return root / "run", root


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("eval_cls") / "run"
    assert main(["train", *TINY, f"run_dir={run}"]) == 0
    return run


def _eval(capsys, *args):
    capsys.readouterr()
    rc = main(["eval", *args])
    out, err = capsys.readouterr()
    assert rc == 0, err
    written = [line for line in out.splitlines() if line.endswith((".json", ".md", ".png"))]
    return json.loads(open(written[0]).read()), written


def _best(run) -> dict:
    return torch.load(run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)


def test_eval_repeats_the_runs_segmentation_validation(seg_run, capsys):
    run, _ = seg_run
    last = pd.read_csv(run / "epochs.csv").iloc[-1]
    result, written = _eval(capsys, f"run={run}", "checkpoint=last")
    assert [p.rsplit("/", 1)[1] for p in written] == ["val-last.json", "val-last.md", "val-last_confusion.png"]
    for key in ("miou", "dice", "pixel_acc", "loss"):
        assert result["metrics"][key] == pytest.approx(last[f"val_{key}"], abs=1e-6), key
    assert result["samples"] == 8 and result["class_names"] == ["background", "red", "green"]
    per_class = result["per_class"]
    assert sum(c["pixels"] for c in per_class.values()) == 8 * 32 * 32
    assert sum(map(sum, result["confusion_matrix"])) == 8 * 32 * 32
    # Per-class IoU from the confusion counts: TP / (TP + FP + FN).
    cm = torch.tensor(result["confusion_matrix"], dtype=torch.float64)
    iou = cm.diag() / (cm.sum(0) + cm.sum(1) - cm.diag()).clamp(min=1)
    assert [c["iou"] for c in per_class.values()] == pytest.approx(iou.tolist(), abs=1e-6)
    best, _ = _eval(capsys, f"run={run}")  # checkpoint=best: the score best.pt was kept for
    assert best["metrics"]["miou"] == pytest.approx(_best(run)["val_miou"], abs=1e-6)
    assert "| red |" in open(written[1]).read() and Image.open(written[2]).size[0] > 200


def test_eval_on_the_test_split_and_on_another_folder(seg_run, capsys):
    run, root = seg_run
    test, written = _eval(capsys, f"run={run}", "split=test")
    assert written[0].endswith("eval/test.json") and test["samples"] == 8
    make_seg_folder(root / "other", "index", 3, splits=("train", "val"), per_split=4, size=32, seed=9)
    other, written = _eval(capsys, f"run={run}", f"dataset.root={root / 'other'}", "dataset.batch_size=3")
    assert written[0].endswith("eval/val-other.json") and other["samples"] == 4
    assert other["dataset"]["root"] == str(root / "other") and 0 <= other["metrics"]["miou"] <= 1


def test_eval_repeats_the_runs_classification_validation(cls_run, capsys):
    result, written = _eval(capsys, f"run={cls_run}")
    assert result["metrics"]["acc"] == pytest.approx(_best(cls_run)["val_acc"], abs=1e-6)
    assert list(result["per_class"]) == ["circle", "square", "triangle", "cross"]
    assert sum(c["support"] for c in result["per_class"].values()) == result["samples"] == 32
    cm = torch.tensor(result["confusion_matrix"], dtype=torch.float64)
    assert result["metrics"]["acc"] == pytest.approx((cm.diag().sum() / cm.sum()).item(), abs=1e-6)
    recall = cm.diag() / cm.sum(1).clamp(min=1)
    assert [c["recall"] for c in result["per_class"].values()] == pytest.approx(recall.tolist(), abs=1e-6)
    assert {"precision", "recall", "f1", "support"} == set(result["per_class"]["circle"])


@pytest.mark.parametrize("args, message", [
    (["split=test"], "split=test: dataset shapes has no test split"),
    (["split=train"], "split=train: use val or test"),
    (["format=onnx"], "no onnx export in"),
    (["dataset.image_size=64"], "dataset.image_size=64 would change what the model sees"),
    (["checkpoint=middle"], "checkpoint=middle: use best, last or ema"),
])
def test_eval_mistakes_are_one_line(cls_run, capsys, args, message):
    before = sorted(p.name for p in cls_run.rglob("*"))
    capsys.readouterr()
    assert main(["eval", f"run={cls_run}", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in cls_run.rglob("*")) == before


def test_eval_on_a_missing_test_folder_is_refused(seg_run, capsys):
    run, root = seg_run
    make_seg_folder(root / "no_test", "index", 3, splits=("train", "val"), per_split=2, size=32, seed=4)
    capsys.readouterr()
    assert main(["eval", f"run={run}", "split=test", f"dataset.root={root / 'no_test'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: split=test: {root / 'no_test' / 'test'} has no images/ folder") and "\n" not in err


@pytest.mark.parametrize("fmt", ["torchscript", pytest.param("int8", marks=pytest.mark.slow)])
def test_eval_of_an_exported_artifact(seg_run, capsys, fmt):
    run, _ = seg_run
    assert main(["export", f"run={run}", f"format={fmt}", "calibration_batches=1", "int8_max_drop=1"]) == 0
    eager, _ = _eval(capsys, f"run={run}")
    result, written = _eval(capsys, f"run={run}", f"format={fmt}")
    assert written[0].endswith(f"eval/val-{fmt}.json") and result["artifact"].startswith(str(run / "export" / fmt))
    assert result["samples"] == eager["samples"]
    if fmt == "torchscript":  # parity with eager within the export's tolerance: the same argmax pixels
        assert result["metrics"]["miou"] == pytest.approx(eager["metrics"]["miou"], abs=1e-3)
    else:  # int8: scored, not equal
        assert 0 <= result["metrics"]["miou"] <= 1 and abs(result["metrics"]["miou"] - eager["metrics"]["miou"]) < 0.2
