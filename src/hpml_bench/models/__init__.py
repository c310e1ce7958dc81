"""Models: each file registers one architecture in MODELS."""
from hpml_bench.models import (  # noqa: F401  (registers)  # noqa: F401  (the outside sources; timm imported on use)
    custom,
    fcn,
    hct,
    iformer,
    inception,
    mlp,
    resnet,
    segnet,
    timm_models,
    tv,
    unet,
)
from hpml_bench.models.base import (
    MODELS,
    ModelConfig,
    build_for_shapes,
    build_model_from_config,
    count_parameters,
    split_points,
)

__all__ = ["MODELS", "ModelConfig", "build_for_shapes", "build_model_from_config", "count_parameters", "split_points"]
