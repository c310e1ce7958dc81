"""`hpml train model=<tiny> dataset=shapes` for every model; UNet learns the shapes' masks."""
import pytest
from conftest import only_run_folder, read_run

from hpml_bench.config.groups import choices
from hpml_bench.train.config import model_config

QUICK = ["dataset.num_train=32", "dataset.num_val=16", "dataset.batch_size=16", "trainer.epochs=1",
         "trainer.progress=never"]


@pytest.mark.parametrize("name", [c for c in choices("model") if c.endswith("_tiny")])
def test_every_tiny_model_trains_on_shapes(hpml, tmp_path, name):
    cfg = model_config(name)
    args = ["train", f"model={name}", f"task={cfg.task}", f"dataset.image_size={cfg.input_size}", *QUICK]
    result = hpml(*args)
    assert result.rc == 0, result.err
    epochs, summary = read_run(only_run_folder(tmp_path))
    metric = "val_miou" if cfg.task == "segmentation" else "val_acc"
    assert epochs[metric].between(0, 1).all() and summary["task"] == cfg.task
    if cfg.task == "segmentation":
        assert {"val_dice", "val_pixel_acc", "train_miou"} <= set(epochs.columns)


def test_segmentation_model_with_classification_task_is_refused(hpml):
    result = hpml("train", "model=unet_tiny", "task=classification")
    assert result.rc == 2 and "does a segmentation task" in result.err


@pytest.mark.slow
def test_unet_tiny_learns_shape_masks(hpml, tmp_path):
    result = hpml("train", "model=unet_tiny", "task=segmentation", "dataset.num_train=512", "dataset.num_val=128",
                  "dataset.batch_size=32", "trainer.epochs=4", "optimizer.lr=0.01", "trainer.progress=never")
    assert result.rc == 0, result.err
    epochs, summary = read_run(only_run_folder(tmp_path))
    assert summary["final"]["val_miou"] >= 0.8, epochs[["epoch", "val_miou", "val_dice"]]
