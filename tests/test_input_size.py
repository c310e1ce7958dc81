"""dataset.image_size=auto picks a size the model accepts; a number that breaks the model's
minimum or divisor is refused before anything runs; the run folder records the number."""
import json

import pytest
import torch
from conftest import TINY

from hpml_bench.train.config import build_model, compose_train, to_train_config


def resolved(*overrides):
    cfg = to_train_config(compose_train(list(overrides)))
    return cfg.dataset.image_size, cfg.model.input_size


@pytest.mark.parametrize("overrides, size", [
    (["model=inception_v3"], 299),  # shapes' 32 < InceptionV3's minimum 75: its declared size
    (["model=inception_v3_tiny"], 75),
    (["model=iformer_small"], 32),  # shapes' own size suits iFormer
    (["model=unet"], 32),
    (["model=unet", "dataset=synthetic", "dataset.native_size=40"], 256),  # 40 is not a multiple of 16
    (["model=fcn_tiny", "dataset=synthetic", "dataset.native_size=48"], 32),
    (["model=segnet", "dataset=synthetic", "dataset.native_size=40"], 40),
    (["model=hct", "dataset=hct"], 512),
    (["model=inception_v3", "dataset=retinopathy"], 299),
    (["model=resnet18", "dataset.image_size=20"], 20),
])
def test_auto_and_numbers_resolve(overrides, size):
    assert resolved(*overrides)[0] == size


def test_mlp_input_follows_the_resolved_size():
    assert resolved("model=mlp", "dataset.image_size=12") == (12, 12)
    assert resolved("model=mlp", "dataset=synthetic") == (64, 64)


@pytest.mark.parametrize("args, message", [
    (["model=inception_v3", "dataset.image_size=64"], "dataset.image_size=64 does not suit model inception_v3: its input must be at least 75"),
    (["model=unet_tiny", "dataset.image_size=40"], "must be at least 16 and divisible by 16 (e.g. 48"),
    (["model=fcn", "dataset.image_size=16"], "must be at least 32 and divisible by 32"),
    (["model=hct", "dataset.image_size=4"], "its input must be at least 5"),
    (["dataset.image_size=big"], "dataset.image_size=big: use auto or a positive number of pixels"),
    (["dataset.image_size=0"], "dataset.image_size=0: use auto or a positive number"),
    (["strategy=ddp", "strategy.nproc_per_node=0"], "strategy.nproc_per_node=0 must be positive"),
    (["strategy=fsdp", "strategy.nproc_per_node=-2"], "strategy.nproc_per_node=-2 must be positive"),
    (["strategy=fsdp", "trainer.channels_last=true"], "strategy=fsdp cannot shard channels-last weights"),
])
def test_refused_before_anything_runs(hpml, tmp_path, args, message):
    result = hpml("train", *args)
    assert result.rc == 2 and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_declared_minimum_and_divisor_are_true():
    """Each model runs at its declared minimum and fails one pixel below. (InceptionV3's 75 is
    torchvision's own declaration, in its weights' meta.)"""
    from hpml_bench.train.config import model_config

    for name in ("hct_tiny", "iformer_tiny", "unet_tiny", "fcn_tiny", "segnet_tiny"):
        cfg = model_config(name)
        model = build_model(name, num_classes=2, in_channels=3).eval()
        with torch.no_grad():
            out = model(torch.randn(1, 3, cfg.min_input_size, cfg.min_input_size))
            assert out.shape[0] == 1
            with pytest.raises(RuntimeError):
                below = cfg.min_input_size - 1
                out = model(torch.randn(1, 3, below, below))
                if out.ndim == 4 and out.shape[-1] != below:  # a decoder that silently changes the size
                    raise RuntimeError("output size differs")


def test_run_folder_holds_the_resolved_size(hpml, tmp_path):
    result = hpml("train", *TINY, "dataset.image_size=auto", "trainer.epochs=1", "model=mlp", "run_dir=runs/r")
    assert result.rc == 0, result.err
    folder = tmp_path / "runs" / "r"
    text = (folder / "config.yaml").read_text()
    assert "image_size: 32" in text and "image_size: auto" not in text
    assert json.loads((folder / "summary.json").read_text())["input_size"] == 32


@pytest.mark.parametrize("preset, checks", [
    ("transfer_resnet18_cifar10", {"model.name": "resnet", "dataset.name": "cifar10", "dataset.image_size": 32,
                                   "model.weights": "IMAGENET1K_V1", "trainer.unfreeze_at_epoch": 2,
                                   "optimizer.backbone_lr_scale": 0.1, "model.num_classes": 10}),
    ("retinopathy_inception_v3", {"model.name": "inception_v3", "dataset.name": "csv_images", "dataset.image_size": 299,
                                  "model.freeze_backbone": True, "model.num_classes": 5, "optimizer.name": "adam"}),
])
def test_experiment_presets_compose(preset, checks):
    cfg = to_train_config(compose_train([f"experiment={preset}"]))
    for key, value in checks.items():
        group, field = key.split(".")
        assert getattr(getattr(cfg, group), field) == value, key


def test_retinopathy_preset_offline_names_the_weights_file(hpml, tmp_path, monkeypatch):
    from fixtures_data import make_retinopathy

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    root = make_retinopathy(tmp_path / "retina", n=6, size=40)
    result = hpml("train", "experiment=retinopathy_inception_v3", f"dataset.root={root}", "dataset.val_fraction=0.3")
    assert result.rc == 2
    assert f"put inception_v3_google-0cc3c7bd.pth into {tmp_path / 'th' / 'hub' / 'checkpoints'}/" in result.err
