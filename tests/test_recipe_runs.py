"""The recipe levers in real `hpml train` runs: the weight EMA validated (val_ema_*), saved as
checkpoints/ema.pt and carried through a resume; export, eval, predict and cam with
checkpoint=ema; eval's test-time augmentation; the digits data set."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from deploy_helpers import write_shape_pngs

from hpml_bench.cli.main import main
from hpml_bench.data import build_datasets
from hpml_bench.strategies.ema import ema_weights
from hpml_bench.train.config import compose_train, to_train_config

# The EMA with the other levers of the loop on: smoothing, weights, the balanced order, SGD.
RECIPE = ["trainer.ema_decay=0.9", "loss.label_smoothing=0.1", "loss.class_weights=auto", "dataset.sampler=balanced",
          "optimizer=sgd", "optimizer.lr=0.01", "optimizer.nesterov=true", "optimizer.no_decay_norm_bias=true",
          "device=cpu"]


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def ema_runs(tmp_path_factory):
    """The same 3-epoch recipe run whole, and as 1 epoch then resumed for 2 more (a constant
    learning rate: a schedule's length depends on trainer.epochs, which the resume changes)."""
    root = tmp_path_factory.mktemp("ema")
    recipe = [*RECIPE, "scheduler=constant"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", *TINY, *recipe, "trainer.epochs=3", f"run_dir={root / 'whole'}"]) == 0
    (root / "whole.log").write_text(out.getvalue())
    assert main(["train", *TINY, *recipe, "trainer.epochs=1", f"run_dir={root / 'part'}"]) == 0
    assert main(["train", f"resume={root / 'part'}", "trainer.epochs=3"]) == 0
    return root


def test_ema_is_validated_checkpointed_and_survives_resume(ema_runs):
    whole = ema_runs / "whole"
    assert "val_ema_acc " in (ema_runs / "whole.log").read_text()  # the epoch line names it
    epochs = pd.read_csv(whole / "epochs.csv")
    assert {"val_acc", "val_loss", "val_ema_acc", "val_ema_loss"} <= set(epochs.columns)
    assert epochs["val_ema_acc"].between(0, 1).all()
    last, ema = _load(whole / "checkpoints" / "last.pt"), _load(whole / "checkpoints" / "ema.pt")
    assert int(last["ema"]["n_averaged"]) == 3 * 4  # 4 optimizer steps an epoch
    weights = ema_weights(last["ema"])
    assert weights.keys() == last["model"].keys() == ema["model"].keys()
    for key in weights:
        assert torch.equal(weights[key], ema["model"][key]), key
    assert any(not torch.equal(weights[k], last["model"][k]) for k in weights)  # an average, not the weights
    assert ema["epoch"] == 3 and ema["val_ema_acc"] == pytest.approx(epochs["val_ema_acc"].iloc[-1])
    # resumed after epoch 1: the same average, to the bit (CPU), as the uninterrupted run
    resumed = _load(ema_runs / "part" / "checkpoints" / "last.pt")
    for key, value in last["ema"].items():
        assert torch.equal(value, resumed["ema"][key]), key
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["final"]["val_ema_acc"] == pytest.approx(epochs["val_ema_acc"].iloc[-1])
    assert len(summary["class_weights"]) == 4 and min(summary["class_weights"]) > 0


def test_eval_export_predict_and_cam_take_checkpoint_ema(ema_runs, tmp_path, capsys):
    run = ema_runs / "whole"
    capsys.readouterr()
    assert main(["eval", f"run={run}", "checkpoint=ema"]) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "eval" / "val-ema.json").read_text())
    assert "checkpoint ema" in out and result["epoch"] == 3
    # hpml eval repeats the run's own validation of the EMA weights
    epochs = pd.read_csv(run / "epochs.csv")
    assert result["metrics"]["acc"] == pytest.approx(epochs["val_ema_acc"].iloc[-1], abs=1e-6)
    assert result["metrics"]["loss"] == pytest.approx(epochs["val_ema_loss"].iloc[-1], rel=1e-5)
    assert main(["export", f"run={run}", "format=torchscript", "checkpoint=ema"]) == 0
    assert (run / "export" / "torchscript-ema" / "model.ts").is_file()
    images = write_shape_pngs(tmp_path / "images", [16, 16])
    capsys.readouterr()
    assert main(["predict", f"run={run}", f"images={images[0].parent}", "checkpoint=ema", "format=torchscript"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    assert main(["cam", f"run={run}", f"images={images[0]}", "checkpoint=ema", "method=eigencam", "device=cpu"]) == 0
    assert list((run / "cam").glob("*_eigencam.png"))


def test_eval_tta_forms_write_their_own_reports(ema_runs, capsys):
    run = ema_runs / "whole"
    assert main(["eval", f"run={run}"]) == 0
    plain = json.loads((run / "eval" / "val.json").read_text())
    assert plain["tta"] == "none"
    for form in ("flip", "multicrop"):
        capsys.readouterr()
        assert main(["eval", f"run={run}", f"tta={form}"]) == 0
        assert f"tta {form}" in capsys.readouterr().out
        result = json.loads((run / "eval" / f"val-tta_{form}.json").read_text())
        assert result["tta"] == form and result["samples"] == 32 and 0 <= result["metrics"]["acc"] <= 1
        assert result["metrics"]["loss"] != plain["metrics"]["loss"]  # other views, another prediction


def test_checkpoint_ema_of_a_run_without_it_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "trainer.epochs=1", f"run_dir={run}"]) == 0
    assert not (run / "checkpoints" / "ema.pt").exists()
    capsys.readouterr()
    assert main(["eval", f"run={run}", "checkpoint=ema"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no checkpoint ema.pt" in err and "trainer.ema_decay" in err
    assert "Traceback" not in err


def test_digits_is_scikit_learns_set_upsampled_with_a_fixed_stratified_split():
    from sklearn.datasets import load_digits

    cfg = to_train_config(compose_train(["dataset=digits", "model=mlp"])).dataset
    assert (cfg.channels, cfg.num_classes, cfg.image_size) == (1, 10, 32)
    train, val = build_datasets(cfg, "classification")
    assert (len(train), len(val)) == (500, 1297)
    counts = torch.bincount(train.labels)
    assert counts.sum() == 500 and counts.min() >= 48 and counts.max() <= 52  # stratified: ~50 of each digit
    assert train.images.shape[1:] == (1, 32, 32) and train.images.dtype == torch.uint8
    assert train.images.max() >= 250 and train.images.min() == 0
    digits = load_digits()
    assert sorted(torch.cat([train.labels, val.labels]).tolist()) == sorted(digits.target.tolist())
    # each image, shrunk back to 8x8 and 0-16, is nearest to one of scikit-learn's with the same label
    originals = torch.from_numpy(digits.images).float().flatten(1)
    shrunk = torch.nn.functional.avg_pool2d(train.images[:40].float(), 4).flatten(1) * 16 / 255
    nearest = torch.cdist(shrunk, originals).argmin(1)
    assert torch.equal(torch.from_numpy(digits.target)[nearest], train.labels[:40])
    again, _ = build_datasets(cfg, "classification")
    assert torch.equal(again.images, train.images) and torch.equal(again.labels, train.labels)  # fixed split
    x, y = train[0][:2]  # (image, label, the sample's seed: none for a plain index)
    assert cfg.augment == ["pad_crop"]  # shifts, no flips: a mirrored digit is another glyph
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32 and 0 <= int(y) <= 9
    np.testing.assert_array_equal(np.unique(val.labels.numpy()), np.arange(10))
