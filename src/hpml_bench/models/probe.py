"""What an outside model accepts, found by trying it: its task (the output's shape) and the
square input sides it takes (the smallest, what they divide by, a largest for fixed-size
transformers), from forward passes on dummy batches.

The passes run on the meta device (shapes only: no memory, no arithmetic) where the model
allows it. A model that cannot be built there (RegNet computes its widths with tensors in
its constructor) or cannot run there (HCT's Performer opens an autocast context for the
input's device) is built on the CPU and probed with real numbers; the search then stays at
or below the first side that works, so the inputs are small.

The side tried first is the data set's; when the model refuses it, the sides the model says
it takes come next (its own declaration, read as timm's resolve_data_config reads it; see
SourceConfig.declared_sizes), so a ViT on 32-pixel images resolves to its 224 instead of
failing."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from hpml_bench.errors import HpmlError

DEVICES = ("meta", "cpu")  # tried in this order
DESIGN_SIZE = 224  # the side assumed when neither the config nor the model says one


@dataclass(frozen=True)
class Probed:
    """What one probe found out."""

    task: str  # classification | segmentation
    min_size: int
    divisor: int
    max_size: Optional[int]  # None: no upper limit found
    design_size: int  # the side it was made for: what dataset.image_size=auto falls back to
    device: str  # where the probe could run: meta, else cpu


_PROBED: dict[tuple, Probed] = {}  # the config is read several times per run; probe once


def probe_once(cfg, channels: int, classes: int, size: int, build: Callable) -> Probed:
    """`probe`, remembered per (config, channels, classes, size)."""
    key = (repr(cfg), channels, classes, size)
    if key not in _PROBED:
        _PROBED[key] = probe(cfg, channels, classes, size, build)
    return _PROBED[key]


def probe(cfg, channels: int, classes: int, size: int, build: Callable) -> Probed:
    """Build `cfg`'s model with `build(cfg)` (source.build_declared), without weights, on the
    meta device, else the CPU, and find what it accepts, starting at `size`; HpmlError (one
    line, naming a side to set) when no side works."""
    # No weights: the probe needs shapes only (and must not download).
    probe_cfg = dataclasses.replace(cfg, num_classes=classes or 2, in_channels=channels, weights=None)
    tried: list[tuple[int, BaseException]] = []
    for device in DEVICES:
        model = _build_on(device, probe_cfg, build)
        if model is None:
            continue
        sizes = _candidates(cfg, model, size)
        for side in sizes:
            out, failure = forward_both_modes(model, channels, side)
            if failure is None:
                check_output(cfg, out, channels, side)
                return _limits(cfg, model, channels, side, out, sizes, device)
            if device == DEVICES[-1]:  # the CPU's error is the model's own, not the meta device's
                tried.append((side, failure))
    raise _refusal(cfg, channels, tried)


def _build_on(device: str, cfg, build: Callable) -> Optional[nn.Module]:
    """The module built under `device` (None when the meta device cannot build it)."""
    try:
        with torch.device(device):
            return build(cfg)
    except HpmlError:
        raise
    except Exception as exc:  # noqa: BLE001 - any constructor failure on meta means: try the CPU
        if device != DEVICES[-1]:
            return None
        raise HpmlError(f"{cfg.describe_build()} cannot be built ({type(exc).__name__}: {first_line(exc)}); "
                        f"check model.kwargs") from exc


def _candidates(cfg, model: nn.Module, size: int) -> list[int]:
    """The data set's side, then the sides the model (or model.input_size) declares."""
    declared = ([cfg.input_size] if cfg.input_size else []) + cfg.declared_sizes(model) + [DESIGN_SIZE]
    return list(dict.fromkeys([size, *declared]))


def forward(model: nn.Module, channels: int, side: int, train: bool):
    """(output, None) when the model runs on a dummy batch of 2 at `side` in train mode (where
    aux-logit heads run) or eval mode, else (None, the error). A tuple's first element (the
    logits of an aux-logit net) is the output."""
    x = torch.zeros(2, channels, side, side, device=_device_of(model))
    try:
        with torch.no_grad():
            out = model.train(train)(x)
    except Exception as exc:  # noqa: BLE001 - a failure here is the answer the probe wants
        return None, exc
    return (out[0] if isinstance(out, (tuple, list)) and out else out), None


def forward_both_modes(model: nn.Module, channels: int, side: int):
    """(eval-mode output, None) when the model runs at `side` in both modes, else (None, the error)."""
    out, failure = forward(model, channels, side, train=True)
    return (out, failure) if failure else forward(model, channels, side, train=False)


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    tensor = tensor if tensor is not None else next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def check_output(cfg, out, channels: int, side: int) -> None:
    """Logits [N, classes] or [N, classes, side, side], else one line saying what came back."""
    shape = [2, channels, side, side]
    if not isinstance(out, torch.Tensor) or out.dim() not in (2, 4):
        got = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {list(out.shape)}"
        raise HpmlError(f"{cfg.describe_build()}: forward on {shape} returns {got}; hpml needs logits "
                        f"[N, classes] (classification) or [N, classes, H, W] (segmentation)")
    if out.dim() == 4 and tuple(out.shape[2:]) != (side, side):
        raise HpmlError(f"{cfg.describe_build()}: segmentation output {list(out.shape)} for input {shape}; "
                        f"the masks need [N, classes, {side}, {side}] (upsample to the input size)")


def _limits(cfg, model: nn.Module, channels: int, works: int, out: torch.Tensor, sizes: list[int],
            device: str) -> Probed:
    task = "segmentation" if out.dim() == 4 else "classification"

    def runs(side: int, train: bool = True) -> bool:  # train mode: the stricter one (aux heads), half the cost
        result, failure = forward(model, channels, side, train)
        return failure is None and (task == "classification" or tuple(result.shape[2:]) == (side, side))

    low = cfg.min_input_size or _smallest_side(runs, 1, works)
    if low != works and not runs(low, train=False):  # validation must run there too
        low = works
    divisor = cfg.input_divisor or (1 if runs(low + 1) else low)
    high = cfg.max_input_size or (low if divisor > 1 and not runs(low + divisor) else None)
    first = sizes[0]  # the side the run feeds: when it failed, the rule must refuse it
    if first != works and first >= low and first % divisor == 0 and (high is None or first <= high):
        if first > works:  # e.g. LeViT's attention biases fit 209..224 only
            high = _largest_side(runs, works, first - 1)
        else:
            low = _smallest_side(runs, first + 1, works)
    design = cfg.input_size or next((s for s in sizes[1:] if s >= low and (high is None or s <= high)), works)
    return Probed(task, low, divisor, high, design, device)


def _smallest_side(runs, low: int, works: int) -> int:
    """Binary search for the smallest side in [low, works] that still runs (`works` does)."""
    high = works
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if runs(mid) else (mid + 1, high)
    return high


def _largest_side(runs, works: int, high: int) -> int:
    """Binary search for the largest side in [works, high] that still runs (`works` does)."""
    low = works
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if runs(mid) else (low, mid - 1)
    return low


def _refusal(cfg, channels: int, tried: list[tuple[int, BaseException]]) -> HpmlError:
    """One line: the data set's side and why it failed, the other sides tried, what to set."""
    (side, failure), others = tried[0], [s for s, _ in tried[1:]]
    also = f"; at side{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} too" if others else ""
    return HpmlError(f"{cfg.describe_build()}: forward fails on a dummy batch of shape {[2, channels, side, side]} "
                     f"({type(failure).__name__}: {first_line(failure)}){also}; set dataset.image_size=<a side it "
                     f"takes> (or model.input_size=<side>, which dataset.image_size=auto then uses), or fix the model")


def first_line(exc: BaseException) -> str:
    return next((s.strip() for s in str(exc).splitlines() if s.strip()), "")[:200]
