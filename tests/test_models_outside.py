"""model=torchvision | timm | custom: built, adapted to the data set, declarations checked, errors one line."""
from __future__ import annotations

import json
import sys
import urllib.error

import pytest
import torch
from deploy_helpers import USER_MYNET

from hpml_bench.errors import HpmlError
from hpml_bench.models import build_model_from_config
from hpml_bench.models.base import head_of, split_points
from hpml_bench.train.config import compose_train, to_train_config

MYNET = USER_MYNET + '''
def not_a_module(num_classes):
    return "hello"

def factory(**kwargs):
    return MyNet(kwargs["num_classes"], kwargs["in_channels"], width=kwargs.get("width", 8))

class Broken(MyNet):
    def forward(self, x):
        return self.head(x.flatten(1))  # forgets the convolutions: 768 features into a Linear of 16
'''


def config(*overrides: str):
    return to_train_config(compose_train(["dataset.image_size=16", *overrides]))


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mynet.py").write_text(MYNET)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mynet", raising=False)
    yield tmp_path
    sys.modules.pop("mynet", None)


@pytest.mark.slow
def test_torchvision_classifier_gets_the_data_sets_classes_and_channels():
    cfg = config("model=torchvision", "model.arch=mobilenet_v3_small", "dataset=synthetic", "task=classification",
                 "dataset.channels=1", "dataset.num_classes=5")
    model = build_model_from_config(cfg.model).eval()
    assert cfg.task == "classification"
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 5)
    assert head_of(model) is model.classifier


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["lraspp_mobilenet_v3_large", "fcn_resnet50"])
def test_torchvision_segmentation_gives_one_nchw_tensor(arch):
    cfg = config("model=torchvision", f"model.arch={arch}", "dataset=synthetic")
    assert cfg.task == "segmentation"  # inferred from the dummy forward's [N, C, H, W]
    with torch.device("meta"):
        out = build_model_from_config(cfg.model).eval()(torch.zeros(2, 3, 16, 16))
    assert isinstance(out, torch.Tensor) and out.shape == (2, cfg.model.num_classes, 16, 16)


def test_timm_model_takes_classes_channels_and_a_local_weights_file(tmp_path):
    import timm

    source = timm.create_model("test_resnet")  # 1000 classes, 3 channels: what a downloaded file holds
    torch.save(source.state_dict(), tmp_path / "w.pth")
    cfg = config("model=timm", "model.arch=test_resnet", f"model.weights={tmp_path / 'w.pth'}")
    model = build_model_from_config(cfg.model).eval()
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, cfg.model.num_classes) == (2, 4)  # shapes: 4 classes
    name = "layer1.0.conv1.weight"
    assert torch.equal(model.state_dict()[name], source.state_dict()[name])
    grey = config("model=timm", "model.arch=test_vit", "dataset=synthetic", "dataset.channels=1", "task=classification")
    assert grey.model.min_input_size == 16 and grey.model.input_divisor == 16  # probed: the 16-pixel patches


def test_custom_model_gets_classes_channels_kwargs_and_declarations(project):
    cfg = config("model=custom", "model.target=mynet:factory", "+model.kwargs.width=4", "model.head=head",
                 "model.split_after=[features]", "model.cam_layer=body.0", "model.freeze_backbone=true")
    model = build_model_from_config(cfg.model)
    assert model.features[0].out_channels == 4 and model.head.out_features == 4
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    stages = split_points(model)
    x = torch.randn(2, 3, 16, 16)
    model.eval()
    assert torch.allclose(stages[1](stages[0](x)), model(x))  # the cut pieces chain to the whole model
    assert model.cam_target()[0] is model.body[0]
    file = (project / "elsewhere.py")
    file.write_text(MYNET)
    moved = config("model=custom", "model.target=elsewhere_net:MyNet", f"model.path={file}")
    assert build_model_from_config(moved.model).head.out_features == 4


def test_builtin_models_keep_their_parameter_counts():
    from hpml_bench.cli.listing import model_facts
    from hpml_bench.cli.model_table import MODEL_FACTS

    assert model_facts("resnet18")["parameters"] == MODEL_FACTS["resnet18"]["parameters"] == 11_689_512


@pytest.mark.parametrize("overrides, message", [
    (["model=custom", "model.target=nosuchmod:Net"], "module nosuchmod not found (looked in "),
    (["model=custom", "model.target=mynet:not_a_module"], "returned str, not a torch.nn.Module"),
    (["model=custom", "model.target=mynet:Broken"], "forward fails on a dummy batch of shape [2, 3, 16, 16]"),
    (["model=custom", "model.target=mynet:MyNt"], "has no MyNt (did you mean 'MyNet'?)"),
    (["model=custom", "model.target=mynet"], "give <module>:<callable>"),
    (["model=custom", "model.target=mynet:MyNet", "model.head=haed"], "model.head=haed is not a module of model.target=mynet:MyNet (did you mean 'head'?)"),
    (["model=custom", "model.target=mynet:MyNet", "model.cam_layer=body.9"], "model.cam_layer=body.9 is not a module"),
    (["model=custom", "model.target=mynet:MyNet", "model.split_after=[featurs]"], "(did you mean 'features'?)"),
    (["model=torchvision", "model.arch=resnt18"], "is not a torchvision model (did you mean 'resnet18'?)"),
    (["model=torchvision"], "model=torchvision needs model.arch=<name>"),
    (["model=torchvision", "model.arch=resnet18", "model.weights=NOPE"], "model.weights=NOPE: torchvision has IMAGENET1K_V1"),
    (["model=timm", "model.arch=test_resnt"], "is not a timm architecture (did you mean 'test_resnet'?)"),
    (["model=timm", "model.arch=test_resnet", "model.weights=/no/w.safetensors"], "model.weights=/no/w.safetensors: no such file"),
])
def test_outside_model_errors_are_one_line_and_leave_nothing(hpml, project, overrides, message):
    result = hpml("train", *overrides, "dataset.image_size=16")
    assert result.rc == 2, result.err
    assert message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (project / "runs").exists()


def test_timm_not_installed_names_the_extra(hpml, project, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    result = hpml("train", "model=timm", "model.arch=test_resnet")
    assert result.rc == 2 and "pip install 'hpml-bench[timm]'" in result.err


def test_torchvision_weights_offline_names_the_file_and_folder(monkeypatch, tmp_path):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cfg = config("model=torchvision", "model.arch=mobilenet_v3_small", "model.weights=DEFAULT")
    with pytest.raises(HpmlError, match=rf"offline, put mobilenet_v3_small-\w+\.pth into {tmp_path}/hub/checkpoints/"):
        build_model_from_config(cfg.model)


@pytest.mark.slow
def test_torchvision_segmentation_model_trains_on_seg_folder(hpml, tmp_path):
    from fixtures_data import make_seg_folder

    make_seg_folder(tmp_path / "segdata", "binary", 2, per_split=4, size=32)
    result = hpml("train", "model=torchvision", "model.arch=lraspp_mobilenet_v3_large", "dataset=seg_folder",
                  f"dataset.root={tmp_path / 'segdata'}", "dataset.batch_size=4", "trainer.epochs=1",
                  "trainer.progress=never", "run_dir=runs/seg")
    assert result.rc == 0, result.err
    summary = json.loads((tmp_path / "runs/seg/summary.json").read_text())
    assert summary["task"] == "segmentation" and 0 <= summary["final"]["val_miou"] <= 1
