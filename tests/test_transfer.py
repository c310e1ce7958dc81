"""Fine-tuning: frozen backbone (BatchNorm statistics included) stays put, the head learns;
after trainer.unfreeze_at_epoch both change; backbone_lr_scale makes two param groups."""
import json

import pytest
import torch
from conftest import TINY

from hpml_bench.train.config import build_model
from hpml_bench.train.optim import OptimizerConfig, build_optimizer

RUN = [*TINY, "dataset.num_train=32", "trainer.epochs=1", "model.small_input=true"]


def _model_state(folder):
    return torch.load(folder / "checkpoints" / "last.pt", weights_only=True)["model"]


def _changed(before, after, keys):
    return {k for k in keys if not torch.equal(before[k], after[k])}


@pytest.fixture
def pretrained(hpml, tmp_path):
    """A weights file from another run (ResNet-18 on shapes)."""
    assert hpml("train", *RUN, "run_dir=runs/pre").rc == 0
    return tmp_path / "runs" / "pre" / "checkpoints" / "last.pt"


def test_frozen_backbone_unchanged_head_trains_then_unfreezes(hpml, tmp_path, pretrained):
    start = torch.load(pretrained, weights_only=True)["model"]
    head = {k for k in start if k.startswith("fc.")}
    backbone = set(start) - head - {k for k in start if k.endswith("num_batches_tracked")}
    frozen = hpml("train", *RUN, f"model.weights={pretrained}", "model.freeze_backbone=true", "run_dir=runs/frozen")
    assert frozen.rc == 0, frozen.err
    assert "parameters: 2,052 trainable, 11,168,832 frozen (backbone frozen for the whole run)" in frozen.out
    after = _model_state(tmp_path / "runs" / "frozen")
    assert _changed(start, after, backbone) == set()  # weights and BatchNorm running statistics
    assert _changed(start, after, head) == head
    summary = json.loads((tmp_path / "runs" / "frozen" / "summary.json").read_text())
    assert summary["trainable_parameters"] == 2052 and summary["frozen_parameters"] == 11_168_832

    thawed = hpml("train", *RUN, f"model.weights={pretrained}", "model.freeze_backbone=true", "trainer.epochs=2",
                  "trainer.unfreeze_at_epoch=2", "optimizer.backbone_lr_scale=0.1", "run_dir=runs/thawed")
    assert thawed.rc == 0, thawed.err
    assert "epoch 2: backbone unfrozen, 11,170,884 parameters train" in thawed.out
    after = _model_state(tmp_path / "runs" / "thawed")
    assert _changed(start, after, backbone) == backbone
    assert _changed(start, after, head) == head


def test_backbone_lr_scale_gives_head_and_backbone_groups():
    model = build_model("resnet18", num_classes=4, in_channels=3)
    opt = build_optimizer(OptimizerConfig(name="sgd", lr=0.1, backbone_lr_scale=0.01), model)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["head"]["lr"] == 0.1 and groups["backbone"]["lr"] == pytest.approx(0.001)
    assert {id(p) for p in groups["head"]["params"]} == {id(p) for p in model.fc.parameters()}
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("args, message", [
    (["trainer.unfreeze_at_epoch=2", "trainer.epochs=3"], "trainer.unfreeze_at_epoch=2 needs model.freeze_backbone=true"),
    (["model.freeze_backbone=true", "trainer.unfreeze_at_epoch=5", "trainer.epochs=3"], "give an epoch from 2 to trainer.epochs=3"),
    (["model.freeze_backbone=true", "trainer.unfreeze_at_epoch=2", "trainer.epochs=3", "strategy=ddp"],
     "trainer.unfreeze_at_epoch works with strategy=single or dp, not ddp"),
    (["optimizer.backbone_lr_scale=0"], "optimizer.backbone_lr_scale=0.0 must be positive"),
    (["model=unet_tiny", "optimizer.backbone_lr_scale=0.5", *TINY], "optimizer.backbone_lr_scale needs a model with a head/fc"),
])
def test_fine_tuning_mistakes_are_one_line(hpml, args, message):
    result = hpml("train", *args)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_offline_named_weights_say_which_file_to_put_where(hpml, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    result = hpml("train", "model.weights=IMAGENET1K_V1", *TINY)
    assert result.rc == 2
    assert f"put resnet18-f37072fd.pth into {tmp_path / 'torch' / 'hub' / 'checkpoints'}/" in result.err
