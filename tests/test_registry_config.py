import math

import pytest
import torch

from hpml_bench.data.shapes import ShapesConfig
from hpml_bench.errors import HpmlError
from hpml_bench.models import MODELS
from hpml_bench.models.resnet import ResNetConfig
from hpml_bench.registry import Registry
from hpml_bench.train.config import TrainConfig, compose_train, to_train_config
from hpml_bench.train.optim import SchedulerConfig, build_scheduler
from hpml_bench.train.trainer_config import TrainerConfig


def test_registry_register_get_and_suggest():
    reg = Registry("widget")
    reg.register("spanner")(int)
    assert reg.get("spanner") is int and reg.names() == ["spanner"]
    with pytest.raises(HpmlError, match="did you mean 'spanner'"):
        reg.get("spaner")
    with pytest.raises(ValueError):
        reg.register("spanner")(float)


def test_default_config_composes_to_typed_parts():
    cfg = to_train_config(compose_train([]))
    assert isinstance(cfg, TrainConfig)
    assert isinstance(cfg.model, ResNetConfig) and cfg.model.depth == 18
    assert isinstance(cfg.dataset, ShapesConfig) and isinstance(cfg.trainer, TrainerConfig)
    # classes and channels come from the data set
    assert (cfg.model.num_classes, cfg.model.in_channels) == (4, 3)
    assert cfg.task == "classification"


def test_overrides_reach_the_typed_config():
    cfg = to_train_config(compose_train(["model=resnet50", "optimizer=sgd", "optimizer.lr=0.05", "trainer.epochs=7"]))
    assert cfg.model.depth == 50 and cfg.optimizer.name == "sgd" and cfg.optimizer.lr == 0.05 and cfg.trainer.epochs == 7


@pytest.mark.parametrize("override, message", [
    ("trainer.epoch=3", "Key 'epoch' not in 'TrainerConfig'"),
    ("trainer.epochs=many", "could not be converted to Integer"),
    ("model=resnt18", "did you mean 'resnet18'"),
    ("dataset=shape", "did you mean 'shapes'"),
    ("trainer.epochs=0", "trainer.epochs=0 must be positive"),
    ("dataset.batch_size=0", "dataset.batch_size=0 must be positive"),
    ("model.num_classes=7", "model.num_classes=7 but dataset shapes gives 4"),
    ("task=segmentation", "does a classification task"),
    ("optimizer.lr=-1", "optimizer.lr=-1.0 must be positive"),
])
def test_config_mistakes_are_one_line_errors(override, message):
    with pytest.raises(HpmlError, match=message) as info:
        to_train_config(compose_train([override]))
    assert "\n" not in str(info.value)


def test_every_registered_model_has_a_schema_and_a_config_file():
    from hpml_bench.cli.listing import (
        SOURCES,  # model=torchvision|timm|custom need an arch/target (test_models_outside.py)
    )
    from hpml_bench.config.groups import choices

    names = {to_train_config(compose_train([f"model={c}"])).model.name for c in choices("model") if c not in SOURCES}
    assert names == set(MODELS.names()) - set(SOURCES)
    assert set(SOURCES) <= set(MODELS.names()) and set(SOURCES) <= set(choices("model"))


def test_cosine_schedule_warms_up_linearly_then_decays_to_min():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_scheduler(SchedulerConfig(name="cosine", warmup_epochs=1, min_lr_ratio=0.1), opt, steps_per_epoch=4, epochs=3)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
