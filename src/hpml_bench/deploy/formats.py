"""The artifact formats: how each is written from an eager model and run back in Python.

Each format is a small class in the FORMATS registry: `save(model, example, path, ctx)`
writes the artifact, `load(path)` returns a callable `x -> logits`. The batch dimension is
dynamic everywhere (torch.export specialises batch 1, so examples have batch >= 2).
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from hpml_bench.deploy.capture import dynamic_batch, export_program, quiet
from hpml_bench.deploy.quantize import quantize_int8
from hpml_bench.errors import HpmlError
from hpml_bench.registry import Registry

FORMATS: Registry = Registry("format")
__all__ = ["FORMATS", "Format", "aoti_package", "dynamic_batch", "export_program", "per_sample", "quiet"]


def per_sample(run):
    """A static batch-1 artifact run on any batch: one sample at a time."""
    def call(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([run(x[i:i + 1]) for i in range(len(x))])
    return call


def aoti_package(program: torch.export.ExportedProgram, path: Path) -> None:
    # Freezing folds the weights into the graph as constants, which is what lets inductor
    # prepack them for oneDNN and fuse the int8 q/dq patterns into int8 kernels: without it
    # int8 ResNet-18 ran at 0.86x eager here, with it 0.20x. It needs no_grad as well, or it
    # is silently skipped.
    with quiet(), torch.no_grad():
        torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs={"freezing": True})


class Format:
    name = "?"
    suffix = ".pt2"
    runs_in_cpp = False  # native_hct can load it

    def save(self, model: nn.Module, example: torch.Tensor, path: Path, ctx) -> None:
        raise NotImplementedError

    def load(self, path: Path):
        raise NotImplementedError


@FORMATS.register("torchscript")
class TorchScript(Format):
    """torch.jit.trace + freeze (not optimize_for_inference: such a module does not load back)."""

    name, suffix, runs_in_cpp = "torchscript", ".ts", True

    def save(self, model, example, path, ctx):
        with quiet(), torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
            buffer = io.BytesIO()  # to a file, a full disk aborts the process inside torch.jit.save
            torch.jit.save(traced, buffer)
        path.write_bytes(buffer.getvalue())  # a plain OSError (ENOSPC) instead

    def load(self, path):
        with quiet():
            return torch.jit.load(str(path), map_location="cpu")


@FORMATS.register("exported")
class Exported(Format):
    """The plain torch.export program (torch.export.load(...).module() runs it)."""

    name = "exported"

    def save(self, model, example, path, ctx):
        torch.export.save(export_program(model, example), str(path))

    def load(self, path):
        return torch.export.load(str(path)).module()


@FORMATS.register("aoti")
class AOTI(Format):
    """torch.export + AOTInductor: a compiled .so inside a .pt2 package (Python or C++)."""

    name, runs_in_cpp = "aoti", True

    def save(self, model, example, path, ctx):
        aoti_package(export_program(model, example), path)

    def load(self, path):
        with quiet():
            return torch._inductor.aoti_load_package(str(path))


@FORMATS.register("onnx")
class Onnx(Format):
    """torch.onnx's dynamo exporter, weights inside the one file; run by ONNX Runtime."""

    name, suffix = "onnx", ".onnx"

    def save(self, model, example, path, ctx):
        with quiet():
            torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes=dynamic_batch(example), input_names=["input"],
                              output_names=["output"], verbose=False)

    def load(self, path):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise HpmlError("format=onnx needs onnxruntime: pip install 'hpml-bench[export]'") from exc

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"input": x.detach().numpy()})[0])

        return run


@FORMATS.register("int8")
class Int8(Format):
    """pt2e static int8 (torchao, X86InductorQuantizer), calibrated on training batches,
    packaged with AOTInductor. Accuracy against fp32 replaces the parity check."""

    name, runs_in_cpp = "int8", True

    def save(self, model, example, path, ctx):
        # Quantize over a free batch (the calibration batches are whole loader batches), then
        # export the int8 graph with the example's batch: static when it is one.
        free = example if len(example) > 1 else torch.cat([example, example])
        aoti_package(export_program(quantize_int8(model, free, ctx.calibration()), example), path)

    def load(self, path):
        with quiet():
            return torch._inductor.aoti_load_package(str(path))
