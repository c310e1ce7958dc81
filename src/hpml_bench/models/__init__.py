"""Models: each file registers one architecture in MODELS."""
from hpml_bench.models import fcn, hct, iformer, inception, mlp, resnet, segnet, unet  # noqa: F401  (registers)
from hpml_bench.models import custom, timm_models, tv  # noqa: F401  (the outside sources; timm imported on use)
from hpml_bench.models.base import MODELS, ModelConfig, build_model_from_config, count_parameters, split_points

__all__ = ["MODELS", "ModelConfig", "build_model_from_config", "count_parameters", "split_points"]
