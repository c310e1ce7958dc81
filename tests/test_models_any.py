"""Any model means any model: every torchvision classification and segmentation builder is
probed (task, the sides it takes; on the meta device, or on the CPU where the meta device
cannot build or run it) and `dataset.image_size=auto` resolves to a side it takes; a sample
of them and a broad sample of timm (fixed-size transformers, re-parameterisable nets,
aux-logit nets) train one step at their smallest input, and no command ends in a traceback.

The one-step sample of torchvision: a fixed set of the awkward ones plus SAMPLE builders drawn
at random per run, the seed printed in pytest's header and the test ids (HPML_MODEL_SEED=<seed>
draws the same again). Builders
above STEP_PARAMS parameters (ViT-L/H, RegNet-Y-128GF, ConvNeXt-L) are probed only: one CPU step
of ViT-H at its 518 px alone takes minutes and ~10 GiB."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import MODEL_SEED

from hpml_bench.cli.main import main
from hpml_bench.models import build_model_from_config
from hpml_bench.models.input_size import accepts
from hpml_bench.models.tv import archs as tv_archs
from hpml_bench.train.config import compose_train, to_train_config

DATA = ["dataset=synthetic", "dataset.native_size=32", "dataset.num_train=2", "dataset.num_val=2"]  # a 32-pixel data set
ONE_STEP = [*DATA, "dataset.batch_size=2",
            "trainer.epochs=1", "trainer.max_steps_per_epoch=1", "trainer.checkpoint_every=0", "trainer.progress=never"]
STEP_PARAMS = 150_000_000
AWKWARD = ["regnet_x_400mf",  # computes its widths with tensors: cannot be built on the meta device
           "googlenet", "inception_v3",  # aux logits in training (InceptionV3's need 299 px)
           "vit_b_32", "maxvit_t", "swin_t",  # a fixed side; sides that must fit windows
           "squeezenet1_1", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"]
SAMPLE = 4
FLOOR_SIDE = 32
TIMM = {  # arch: extra overrides
    "test_resnet": [], "test_efficientnet": [], "test_convnext": [], "test_vit": [],
    "vit_tiny_patch16_224": [], "deit_tiny_distilled_patch16_224": [], "levit_128s": [],  # fixed-size transformers
    "repvgg_a0": [], "mobileone_s0": [],  # re-parameterisable (train-time branches)
    "inception_v3": ["+model.kwargs.aux_logits=true"],  # aux logits
}


def params(arch: str) -> int:
    import torchvision.models as tvm

    return tvm.get_model_weights(arch).DEFAULT.meta["num_params"]


def config(*overrides: str):
    return to_train_config(compose_train([*DATA, *overrides]))


def smallest_side(model_cfg) -> int:
    """The smallest side the model takes, at least FLOOR_SIDE (the data set's own side): where a
    deep net's maps shrink to 1 pixel, its BatchNorm over 2 samples amplifies by up to
    1/sqrt(eps) per layer (RegNet-X-16GF's gradients overflow to NaN at 1 px, ResNeXt-101's at
    16 px, where its last two stages are 1x1; hpml reports it in one line, exit 3: a numerical
    fact, not a model hpml cannot train)."""
    low, divisor = max(model_cfg.min_input_size, FLOOR_SIDE), model_cfg.input_divisor
    side = -(-low // divisor) * divisor
    return side if model_cfg.max_input_size is None else min(side, model_cfg.max_input_size)


def step_sample() -> list:
    """AWKWARD, then SAMPLE others drawn with conftest's MODEL_SEED (in the test ids too)."""
    rest = sorted(a for a in tv_archs() if a not in AWKWARD and params(a) <= STEP_PARAMS)
    drawn = random.Random(MODEL_SEED).sample(rest, SAMPLE)
    return AWKWARD + [pytest.param(arch, id=f"{arch}-seed{MODEL_SEED}") for arch in drawn]


def train_one_step(tmp_path: Path, capsys, *overrides: str) -> str:
    capsys.readouterr()
    rc = main(["train", *ONE_STEP, *overrides, f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert rc == 0, err
    assert (tmp_path / "run" / "summary.json").is_file()
    return err


@pytest.mark.slow
def test_every_torchvision_builder_is_probed_and_sized():
    """All of them, at a 32-pixel data set's own size: task, limits, a side that works."""
    found = {}
    for arch, task in tv_archs().items():
        cfg = config("model=torchvision", f"model.arch={arch}")
        model, size = cfg.model, cfg.dataset.image_size
        assert cfg.task == task, arch
        assert accepts(model, size), (arch, size, model)
        found[arch] = (model.min_input_size, model.input_divisor, model.max_input_size, size)
    assert found["regnet_x_400mf"][3] == 32  # probed on the CPU, takes the data's own side
    assert found["vit_b_16"] == (224, 224, 224, 224)  # one side
    assert found["vit_h_14"][3] == 224  # its own image_size: 518 is the side of its SWAG weights only
    assert found["inception_v3"][3] == 299  # the aux head needs 299 in training: its weights' crop
    assert found["resnet18"] == (1, 1, None, 32)


@pytest.mark.slow
@pytest.mark.parametrize("arch", step_sample())
def test_torchvision_builder_trains_one_step_at_its_smallest_input(arch, tmp_path, capsys):
    side = smallest_side(config("model=torchvision", f"model.arch={arch}").model)
    train_one_step(tmp_path, capsys, "model=torchvision", f"model.arch={arch}", f"dataset.image_size={side}")


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(TIMM))
def test_timm_sample_trains_one_step_at_its_smallest_input(arch, tmp_path, capsys):
    cfg = config("model=timm", f"model.arch={arch}", *TIMM[arch])
    side = smallest_side(cfg.model)
    # Where the smallest side is the one `auto` picks (the fixed-size transformers), no key at all.
    size = [] if side == cfg.dataset.image_size else [f"dataset.image_size={side}"]
    train_one_step(tmp_path, capsys, "model=timm", f"model.arch={arch}", *TIMM[arch], *size)


@pytest.mark.parametrize("source, arch, side", [
    ("torchvision", "vit_b_16", 224), ("torchvision", "maxvit_t", 224), ("torchvision", "inception_v3", 299),
    ("torchvision", "alexnet", 224), ("timm", "vit_tiny_patch16_224", 224),
    ("timm", "deit_tiny_distilled_patch16_224", 224), ("timm", "levit_128s", 224),
])
def test_auto_size_takes_what_the_model_declares(source, arch, side, hpml):
    """A 32-pixel data set: the model's own side instead of a refusal; a number it cannot
    take is refused in one line that names the side to set."""
    cfg = config(f"model={source}", f"model.arch={arch}")
    assert cfg.dataset.image_size == cfg.model.input_size == side
    result = hpml("train", f"model={source}", f"model.arch={arch}", "dataset.image_size=32")
    assert result.rc == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert f"dataset.image_size=32 does not suit {source} model {arch}" in result.err
    assert f"(e.g. {cfg.model.min_input_size}" in result.err


def test_a_fixed_or_windowed_side_is_refused_above_as_well(hpml):
    result = hpml("train", "model=timm", "model.arch=levit_128s", "dataset.image_size=256")
    assert result.rc == 2 and "at least 209 and at most 224 (e.g. 224)" in result.err, result.err
    result = hpml("train", "model=torchvision", "model.arch=vit_b_16", "dataset.image_size=448")
    assert result.rc == 2 and "its input must be exactly 224 (e.g. 224)" in result.err, result.err


def test_a_model_the_meta_device_cannot_build_is_probed_on_the_cpu(capsys):
    from hpml_bench.models.probe import probe
    from hpml_bench.models.source import build_declared

    cfg = config("model=torchvision", "model.arch=regnet_x_400mf").model
    found = probe(cfg, 3, 2, 32, build_declared)
    assert found.device == "cpu" and (found.task, found.min_size, found.divisor) == ("classification", 1, 1)
    meta = probe(config("model=torchvision", "model.arch=resnet18").model, 3, 2, 32, build_declared)
    assert meta.device == "meta"
    # why: the constructor needs real numbers
    with pytest.raises(NotImplementedError, match="meta tensor"), torch.device("meta"):
        build_model_from_config(cfg)


def test_a_model_that_fails_everywhere_names_the_side_to_set(hpml, tmp_path, monkeypatch):
    (tmp_path / "onlysix.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(in_channels * 36, num_classes)\n"
        "    def forward(self, x):\n"
        "        return self.fc(x.flatten(1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = hpml("train", "model=custom", "model.target=onlysix:Net")
    assert result.rc == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert "forward fails on a dummy batch of shape [2, 3, 32, 32]" in result.err
    assert "; at side 224 too; set dataset.image_size=<a side it takes>" in result.err
    ok = hpml("train", "model=custom", "model.target=onlysix:Net", "model.input_size=6", "dataset.num_train=4",
              "dataset.num_val=2", "trainer.epochs=1", "trainer.progress=never", "run_dir=r6")
    assert ok.rc == 0, ok.err  # model.input_size declares the side: auto resolves to it
    assert "image_size: 6" in (tmp_path / "r6" / "config.yaml").read_text()


def test_hpml_list_shows_a_users_outside_models_that_meta_cannot_build(hpml, tmp_path):
    (tmp_path / "conf" / "model").mkdir(parents=True)
    for name, arch in (("myregnet", "regnet_x_400mf"), ("myvit", "vit_b_32")):
        (tmp_path / "conf" / "model" / f"{name}.yaml").write_text(
            f"defaults:\n  - torchvision_schema\n  - _self_\narch: {arch}\n")
    result = hpml("list", "models")
    assert result.rc == 0 and "Traceback" not in result.err, result.err
    rows = {line.split("│")[1].strip(): line for line in result.out.splitlines() if line.count("│") > 3}
    assert "5,495,976" in rows["myregnet"] and ">= 1" in rows["myregnet"]  # built on the CPU for its count
    assert "exactly 224" in rows["myvit"] and "224x224" in rows["myvit"]


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [["model=torchvision", "model.arch=regnet_x_400mf"],
                                       ["model=timm", "model.arch=levit_128s"]], ids=["regnet", "levit"])
def test_export_eval_cam_predict_take_models_meta_cannot_build_or_fixed_sides(overrides, hpml, tmp_path):
    from deploy_helpers import make_run, write_shape_pngs

    run = make_run(tmp_path / "run", ["dataset.num_train=8", "dataset.num_val=4", "dataset.batch_size=4", *overrides])
    images = write_shape_pngs(tmp_path / "imgs", [32, 40])
    for command in (["export", f"run={run}", "format=torchscript"], ["eval", f"run={run}"],
                    ["cam", f"run={run}", f"images={images[0].parent}"], ["predict", f"run={run}", f"images={images[1]}"]):
        result = hpml(*command)
        assert result.rc == 0 and "Traceback" not in result.err, (command, result.err)
    assert (run / "export" / "torchscript" / "model.ts").is_file() and (run / "cam").is_dir()


def test_an_outside_model_that_fails_in_the_loop_is_one_line(hpml, tmp_path):
    """The probe's dummy batches are 2 images; this model refuses the run's batches of 4."""
    (tmp_path / "picky.py").write_text(
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(in_channels, num_classes)\n"
        "    def forward(self, x):\n"
        "        assert x.shape[0] != 4, 'four is too many'\n"
        "        return self.fc(x.mean((2, 3)))\n")
    result = hpml("train", "model=custom", "model.target=picky:Net", "dataset.num_train=8", "dataset.num_val=4",
                  "dataset.batch_size=4", "trainer.epochs=1", "trainer.progress=never", "run_dir=r")
    assert result.rc == 2 and "Traceback" not in result.err, result.err
    assert result.err.strip().splitlines()[-1].startswith(
        "error: model.target=picky:Net failed in training (AssertionError: four is too many); ")
