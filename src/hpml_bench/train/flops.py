"""How close a run is to the hardware: FLOPs per training sample, achieved TFLOP/s, MFU.

The model's FLOPs per sample are counted once, before training, by
`torch.utils.flop_counter.FlopCounterMode` over one forward + loss + backward of a copy of
the model on the meta device (shapes only: no arithmetic, no memory, no random numbers
drawn, the real model and optimizer untouched). A model the meta device cannot run (HCT's
Performer opens an autocast context for the input's device; data-dependent code) is counted
the same way on a copy on the run's own device at batch 1 (random numbers drawn in a forked
generator state, the copy freed before training), outside the timed epochs; summary.json's
`flops_counted_on` says which way was used. The counter counts 2 FLOPs per multiply-add
(torchvision's `_ops` count 1). Achieved TFLOP/s = FLOPs/sample x samples / run_s; MFU =
achieved / (peak dense TFLOP/s of one device for the run's precision x devices).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn

# Peak dense (no sparsity) TFLOP/s per device from the vendors' data sheets. NVIDIA lists
# tensor-core figures "with sparsity" for Ampere and later: these are half of those.
# fp32 = CUDA cores (no tensor cores); tf32/bf16/fp16 = tensor cores. Missing = the GPU has
# no tensor-core path for that precision (no MFU then; set trainer.peak_tflops).
# (regex on torch.cuda.get_device_name(), table name, {precision: TFLOP/s}); first match wins.
PEAK_TFLOPS: tuple[tuple[str, str, dict[str, float]], ...] = (
    (r"H200.*NVL", "H200 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"H200", "H200 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"H100.*NVL", "H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5}),
    (r"H100.*PCIe", "H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5}),
    (r"H100", "H100 SXM", {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5}),
    (r"A100", "A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    (r"L40S", "L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    (r"\bL4\b", "L4", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    (r"V100S", "V100S PCIe", {"fp32": 16.4, "fp16": 130.0}),
    (r"V100.*PCIE", "V100 PCIe", {"fp32": 14.0, "fp16": 112.0}),
    (r"V100", "V100 SXM2", {"fp32": 15.7, "fp16": 125.0}),
    (r"RTX 8000", "Quadro RTX 8000", {"fp32": 16.3, "fp16": 130.5}),
    (r"\bT4\b", "T4", {"fp32": 8.1, "fp16": 65.0}),
)


def count_train_flops(model: nn.Module, input_shape: tuple[int, ...], loss_fn: Optional[Callable],
                      logits_fn: Callable = lambda out: out, device: str | torch.device = "meta",
                      batch: int = 2) -> float:
    """FLOPs of one training step (forward, loss, backward) per sample, at `input_shape`
    (C, H, W); forward only when loss_fn is None. Counted on a copy on `device` (the meta
    device by default: nothing real is computed), so the model itself is never changed.
    batch 2 by default: BatchNorm in train mode wants more than one value per channel."""
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(device)
    ghost = copy.deepcopy(model).to(device).train(model.training)
    inputs = torch.zeros(batch, *input_shape, device=device)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                FlopCounterMode(display=False) as counter, torch.set_grad_enabled(loss_fn is not None):
            outputs = ghost(inputs)
            if loss_fn is not None:
                logits = logits_fn(outputs)
                # Classification: one class per sample; segmentation: one per pixel of the logits.
                targets = torch.zeros((logits.shape[0], *logits.shape[2:]), dtype=torch.long, device=device)
                loss_fn(outputs, targets).backward()
    finally:
        del ghost
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the copy's memory goes back before training
    return counter.get_total_flops() / batch


def precision_key(precision: str) -> str:
    """The peak-table column for a run's precision. fp32 on a GPU with TF32 tensor cores is
    judged against TF32 when PyTorch lets cuDNN or cuBLAS use it (cuDNN convolutions do by
    default: torch.backends.cudnn.allow_tf32)."""
    if precision != "fp32":
        return precision
    tf32 = torch.backends.cudnn.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    return "tf32" if tf32 else "fp32"


def lookup_peak(device_name: str, precision: str) -> tuple[Optional[float], str]:
    """(peak dense TFLOP/s of one device, where it came from) for a CUDA device name."""
    key = precision_key(precision)
    for pattern, name, peaks in PEAK_TFLOPS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            if key == "tf32" and key not in peaks:
                key = "fp32"  # no TF32 tensor cores (pre-Ampere): fp32 runs on CUDA cores
            if key in peaks:
                return peaks[key], f"{name} {key} (data sheet, dense)"
            return None, f"{name} has no {key} tensor cores in the table; set trainer.peak_tflops"
    return None, f"{device_name} is not in hpml's peak table; set trainer.peak_tflops"


def resolve_peak(device: torch.device, precision: str, override: Optional[float]) -> tuple[Optional[float], str]:
    """trainer.peak_tflops when given, else the table's figure for a CUDA device, else none (CPU)."""
    if override is not None:
        return float(override), "trainer.peak_tflops"
    if device.type != "cuda":
        return None, "no peak for CPU; set trainer.peak_tflops for an MFU"
    return lookup_peak(torch.cuda.get_device_name(device), precision)


@dataclass
class Throughput:
    """Turns samples and seconds into achieved TFLOP/s and MFU (None when no peak is known)."""

    flops_per_sample: Optional[float] = None
    peak_tflops: Optional[float] = None  # of one device
    devices: int = 1

    def rates(self, samples: float, seconds: float) -> dict[str, Any]:
        if not self.flops_per_sample or seconds <= 0:
            return {"tflops": None, "mfu": None}
        tflops = self.flops_per_sample * samples / seconds / 1e12
        mfu = tflops / (self.peak_tflops * self.devices) if self.peak_tflops else None
        return {"tflops": tflops, "mfu": mfu}

    def info(self) -> dict[str, Any]:
        return {"flops_per_sample": self.flops_per_sample, "peak_tflops": self.peak_tflops, "devices": self.devices}


def measure(model: nn.Module, input_shape: tuple[int, ...], task, device: torch.device, precision: str,
            override: Optional[float], devices: int) -> tuple[Throughput, dict[str, Any]]:
    """The run's Throughput and what summary.json records about it: counted on the meta
    device, else on `device` at batch 1 (then 2, for a model whose BatchNorm needs it); a
    model that fails both gets no count rather than no run."""
    flops, where, failures = None, None, []
    for on, batch in (("meta", 2), (device, 1), (device, 2)):
        try:
            flops, where = count_train_flops(model, input_shape, task.loss, task.logits, on, batch), (str(on), batch)
            break
        except Exception as exc:  # noqa: BLE001 - any failure only costs the FLOP columns
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
    peak, source = resolve_peak(device, precision, override)
    meter = Throughput(flops, peak, devices)
    info = {**meter.info(), "peak_source": source}
    if where is None:
        info["flops_note"] = f"FLOPs not counted: {failures[-1]}"
    else:
        info["flops_counted_on"] = where[0] if where[0] == "meta" else f"{where[0]} at batch {where[1]}"
        if where[0] != "meta":  # why the count ran for real
            info["flops_note"] = f"FLOPs counted on {info['flops_counted_on']} (meta device: {failures[0]})"
    return meter, info
