"""One checked deployment artifact of a trained run (`hpml export`, cli/export.py).

The artifact and its meta.json are written into a temp folder, checked against the eager
model (or, for int8, scored on the validation set next to fp32), and only then renamed to
`<run>/export/<format>[-last]/`: a refused export leaves nothing behind.
"""
from __future__ import annotations

import datetime
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from hpml_bench.deploy.formats import per_sample
from hpml_bench.deploy.validate import RunData, int8_accuracy, parity
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder.checksums import (
    file_sha256 as sha256,  # the one implementation (predict and native_hct check it)
)
from hpml_bench.runfolder.writes import atomic_write_json, is_write_failure, write_error
from hpml_bench.train.trained_run import TrainedRun

ARTIFACT = "model"
META = "meta.json"


@dataclass
class ExportConfig:
    run: str = ""  # the run folder
    format: str = "torchscript"  # torchscript | exported | aoti | onnx | int8
    checkpoint: str = "best"  # best | last | ema (the weights' moving average, runs with trainer.ema_decay)
    calibration_batches: int = 8  # int8: training batches the observers see
    tolerance: float = 1e-4  # parity: max |artifact - eager| / max(1, max |eager|)
    parity_images: int = 8  # validation images the parity check runs
    int8_max_drop: float = 0.01  # int8 is refused when it scores more than this (one point) below fp32
    eval_batches: Optional[int] = None  # int8: validation batches scored (null = all)
    threads: Optional[int] = None  # torch CPU threads (null = torch's default)
    # dynamic: the artifact takes any batch; 1: a static batch of one, faster at batch 1
    # (HCT int8 AOTI 2.85 -> 1.47 ms here: no symbolic sizes in the compiled kernels).
    batch: str = "dynamic"

    def __post_init__(self):
        self.batch = str(self.batch)  # `batch=1` on the command line, or 1 from Python
        if self.batch not in ("dynamic", "1"):
            # hpml predict and native_hct feed one image at a time; a static batch of N could not run them.
            raise HpmlError(f"export.batch={self.batch}: use dynamic (any batch) or 1 (a static batch of one)")

    @property
    def static_batch(self) -> bool:
        return self.batch == "1"


def export_run(trained: TrainedRun, fmt, data: RunData, cfg: ExportConfig) -> Path:
    """Write, check and publish one artifact; returns its final path."""
    final = trained.folder.export_dir(fmt.name, cfg.checkpoint)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        path = tmp / f"{ARTIFACT}{fmt.suffix}"
        example = data.example()[:1] if cfg.static_batch else data.example()
        try:
            fmt.save(trained.model, example, path, data)
            runner = per_sample(fmt.load(path)) if cfg.static_batch else fmt.load(path)
        except HpmlError:
            raise
        except Exception as exc:
            if is_write_failure(exc):
                raise write_error(final / path.name, exc) from exc
            raise HpmlError(f"format={fmt.name} cannot export model {trained.model_name}: {_first_line(exc)}") from exc
        check = int8_accuracy(trained, runner, data, cfg.int8_max_drop) if fmt.name == "int8" else \
            parity(trained, runner, data, cfg.tolerance, fmt.name)
        _fsync(path)
        atomic_write_json(tmp / META, _without_nulls(meta(trained, fmt, path, cfg, check)))
        _publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(check["line"])
    return final / path.name


def meta(trained: TrainedRun, fmt, path: Path, cfg: ExportConfig, check: dict) -> dict:
    """What a loader needs to feed the artifact and read its output, and how it was checked."""
    spec = trained.preprocess()
    return {
        "model": trained.model_name,
        "task": trained.task,
        "format": fmt.name,
        "file": path.name,
        "sha256": sha256(path),
        "input": {"channels": spec["channels"], "height": spec["size"][0], "width": spec["size"][1],
                  "batch": 1 if cfg.static_batch else "dynamic"},
        "preprocess": spec,
        "class_names": trained.class_names(),
        "num_classes": trained.model_cfg.num_classes,
        "check": {k: v for k, v in check.items() if k != "line"},
        "run": str(trained.run_dir),
        "checkpoint": cfg.checkpoint,
        "epoch": trained.epoch,
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _without_nulls(data: dict) -> dict:
    """native_hct reads meta.json with OpenCV's JSON parser, which rejects null."""
    return {k: _without_nulls(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _publish(tmp: Path, final: Path) -> None:
    """Swap the checked folder in; an earlier export of the same format is replaced whole."""
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {line[:300]}" if line else type(exc).__name__
