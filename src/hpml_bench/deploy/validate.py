"""The run's data for export checks: example inputs, calibration batches, validation scores."""
from __future__ import annotations

import itertools
from typing import Iterator, Optional

import torch

from hpml_bench.data import build_datasets, eval_loader
from hpml_bench.errors import HpmlError
from hpml_bench.tasks import build_task
from hpml_bench.train.trained_run import TrainedRun


class RunData:
    """The run's own data set (validation transform for checks, training batches to calibrate)."""

    def __init__(self, trained: TrainedRun, parity_images: int = 8, calibration_batches: int = 8,
                 eval_batches: Optional[int] = None):
        self.trained = trained
        self.parity_images, self.calibration_batches, self.eval_batches = parity_images, calibration_batches, eval_batches
        self._datasets = None

    def datasets(self):
        if self._datasets is None:
            try:
                self._datasets = build_datasets(self.trained.dataset_cfg, self.trained.task)
            except HpmlError as exc:
                raise HpmlError(f"the run's data set is needed to check the export: {exc}") from exc
        return self._datasets

    def loader(self, train: bool):
        # The run's own collate and batch transform: a cached run's loader hands out uint8 batches.
        return eval_loader(self.trained.dataset_cfg, self.datasets()[0 if train else 1])

    def example(self) -> torch.Tensor:
        """Validation images (>= 2: torch.export specialises a batch of 1) for tracing and parity."""
        images = []
        for x, _ in self.loader(train=False):
            images.append(x)
            if sum(len(b) for b in images) >= self.parity_images:
                break
        x = torch.cat(images)[: max(2, self.parity_images)]
        return x if len(x) >= 2 else torch.cat([x, x.flip(-1)])

    def calibration(self) -> Iterator[torch.Tensor]:
        for x, _ in itertools.islice(self.loader(train=True), self.calibration_batches):
            yield x

    def validation(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from itertools.islice(self.loader(train=False), self.eval_batches)


def parity(trained: TrainedRun, runner, data: RunData, tolerance: float, fmt: str) -> dict:
    """Run artifact and eager model on the same images (a batch, and a single image); refuse beyond tolerance."""
    x = data.example()
    worst = 0.0
    with torch.no_grad():
        for batch in (x, x[:1]):
            expected = trained.model(batch)
            got = runner(batch)
            scale = max(1.0, expected.abs().max().item())
            worst = max(worst, (got.float() - expected).abs().max().item() / scale)
    if not worst <= tolerance:
        raise HpmlError(f"format={fmt}: the artifact differs from the eager model by {worst:.2e} "
                        f"(> tolerance {tolerance:.0e}); nothing written")
    line = (f"parity: max |{fmt} - eager| = {worst:.2e} (relative to max(1, |logit|)) on {len(x)} validation "
            f"images and batch 1, tolerance {tolerance:.0e}")
    return {"kind": "parity", "max_abs_diff": worst, "tolerance": tolerance, "images": len(x), "line": line}


def score(trained: TrainedRun, run, data: RunData) -> tuple[str, float, int]:
    """(metric name, value, samples) of `run` on the validation set: accuracy, or mIoU."""

    task = build_task(trained.task, trained.model_cfg.num_classes)
    metrics, name, samples = task.metrics(), task.monitor.removeprefix("val_"), 0
    with torch.no_grad():
        for x, y in data.validation():
            metrics.update(run(x), y)
            samples += len(x)
    return name, float(metrics.compute()[name]), samples


def int8_accuracy(trained: TrainedRun, runner, data: RunData, max_drop: float) -> dict:
    """int8's validation score next to fp32's; refused when it drops more than max_drop."""
    name, fp32, samples = score(trained, trained.model, data)
    _, int8, _ = score(trained, runner, data)
    drop = fp32 - int8
    line = f"int8 {name} {int8:.4f} vs fp32 {fp32:.4f} on {samples} validation samples (drop {100 * drop:+.2f} points)"
    if drop > max_drop:
        raise HpmlError(f"format=int8: {line}, more than int8_max_drop={max_drop}; nothing written "
                        f"(more export.calibration_batches may help)")
    return {"kind": "int8_accuracy", "metric": name, "fp32": fp32, "int8": int8, "drop": drop,
            "samples": samples, "max_drop": max_drop, "line": line}
