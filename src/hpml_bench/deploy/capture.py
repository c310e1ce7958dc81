"""Capturing a model as a graph: torch.export with a free batch dimension, and quiet exporters.

Shared by the formats (formats.py) and int8 quantization (quantize.py), so neither imports
the other's module to reach them.
"""
from __future__ import annotations

import contextlib
import logging
import warnings

import torch
from torch import nn


def dynamic_batch(example: torch.Tensor):
    """torch.export's dynamic_shapes for a single input with a free batch dimension; None (a
    static batch of 1) for an example of one (`export.batch=1`)."""
    if len(example) == 1:
        return None
    return ({0: torch.export.Dim("batch", min=1, max=4096)},)


def export_program(model: nn.Module, example: torch.Tensor, strict: bool = False) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=dynamic_batch(example), strict=strict)


@contextlib.contextmanager
def quiet():
    """TorchScript's deprecation notice and the exporters' chatter are not the user's concern."""
    loggers = [logging.getLogger(name) for name in ("torch.utils._pytree", "torch.utils.cpp_extension", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
