"""build_model(name, **overrides): a model from its config file, without a training run."""
from __future__ import annotations

from omegaconf import OmegaConf
from torch import nn

from hpml_bench.errors import HpmlError
from hpml_bench.models.base import ModelConfig, build_model_from_config


def model_config(name: str, **overrides) -> ModelConfig:
    """The typed config of conf/model/<name>.yaml with field overrides applied."""
    from hpml_bench.config import compose_train

    dcfg = compose_train([f"model={name}"]).model
    try:
        merged = OmegaConf.merge(dcfg, overrides)
        return OmegaConf.to_object(merged)
    except Exception as exc:
        raise HpmlError(f"build_model({name!r}, ...): {str(exc).splitlines()[0]}") from exc


def build_model(name: str, **overrides) -> nn.Module:
    return build_model_from_config(model_config(name, **overrides))
