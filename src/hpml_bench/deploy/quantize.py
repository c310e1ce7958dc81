"""int8 post-training static quantization through torchao's pt2e flow (X86 inductor quantizer).

torch.ao.quantization's pt2e entry points moved to torchao; the FX-mode path is deprecated.
The quantized graph is exported again and compiled by AOTInductor, which lowers the
quantize/dequantize patterns to oneDNN int8 kernels (VNNI / AMX where the CPU has them).
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from hpml_bench.deploy.capture import dynamic_batch, quiet
from hpml_bench.errors import HpmlError


def quantize_int8(model: nn.Module, example: torch.Tensor, batches: Iterable[torch.Tensor]) -> nn.Module:
    """The converted (int8 q/dq) graph module, calibrated on `batches` of model inputs."""
    try:
        with quiet():  # torchao's import warns about torch internals (pytree enum registration)
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import (
                convert_pt2e,
                prepare_pt2e,
            )
    except ImportError as exc:
        raise HpmlError("format=int8 needs torchao: pip install -e '.[export]'") from exc
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    for name in _narrow_max_pools(model, example):
        quantizer.set_module_name_qconfig(name, None)
    with quiet(), torch.no_grad():
        # strict export: torchvision's BasicBlock reuses one ReLU module, which non-strict
        # capture turns into a partition with two outputs that prepare_pt2e rejects.
        captured = _capture(model, example)
        prepared = prepare_pt2e(captured, quantizer)
        seen = 0
        for x in batches:
            prepared(x)
            seen += 1
        if not seen:
            raise HpmlError("format=int8: no calibration batches; set export.calibration_batches above 0")
        return convert_pt2e(prepared)


def _capture(model: nn.Module, example: torch.Tensor) -> nn.Module:
    errors = []
    for strict in (True, False):
        try:
            return torch.export.export(model, (example,), dynamic_shapes=dynamic_batch(example), strict=strict).module()
        except Exception as exc:  # strict (dynamo) capture fails on some models; non-strict may not
            errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    raise HpmlError(f"format=int8: torch.export cannot capture {type(model).__name__} ({errors[-1]})")


# The int8 max-pool (quantized::max_pool2d, run as an ATen fallback) vectorizes over channels
# 64 at a time; other widths run mostly scalar. Measured on this machine (2 threads, NHWC):
# 16 channels 0.72 ms vs 0.10 ms for the fp32 pool Inductor fuses with the next quantize;
# 32: 0.22 vs 0.23; 48: 0.28 vs 0.14; 64: 0.04 vs 0.13. HCT's 16-channel stem pool was a
# third of its int8 latency.
INT8_POOL_CHANNELS = 64


def _narrow_max_pools(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the max-pools whose input channels are not a multiple of INT8_POOL_CHANNELS:
    left in float, where Inductor generates one fused kernel for them."""
    channels: dict[str, int] = {}

    def record(name: str):
        def hook(_, args) -> None:  # returns None: the input goes on unchanged
            channels[name] = args[0].shape[1]
        return hook

    hooks = [module.register_forward_pre_hook(record(name))
             for name, module in model.named_modules() if isinstance(module, nn.MaxPool2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    return [name for name, c in channels.items() if c % INT8_POOL_CHANNELS]
