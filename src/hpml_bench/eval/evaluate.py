"""Scoring a trained run (or an exported artifact) on a split of its data set (`hpml eval`,
cli/eval.py), through the run's own preprocessing: accuracy and per-class precision/recall/F1 for
classification; mIoU, per-class IoU and Dice for segmentation; a confusion matrix for both.
Results: <run>/eval/<split>[-<format>][-<checkpoint>][-tta_<form>][-<folder>].json, .md and _confusion.png.
"""
from __future__ import annotations

import dataclasses
import datetime
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from hpml_bench.data import build_datasets, eval_loader
from hpml_bench.deploy.predict import load_predictor
from hpml_bench.errors import HpmlError
from hpml_bench.eval.report import write_report
from hpml_bench.eval.scores import SCORES
from hpml_bench.eval.tta import with_tta
from hpml_bench.tasks import build_task
from hpml_bench.train.trained_run import load_config, load_trained, run_device

# What the model's input and output depend on: an eval that changed them would not score the run.
SPLITS = ("val", "test")
FIXED_KEYS = ("image_size", "channels", "center_crop", "mask_classes", "num_classes")


@dataclass
class EvalConfig:
    run: str = ""  # the run folder
    checkpoint: str = "best"  # best | last | ema (the weights' moving average, runs with trainer.ema_decay)
    split: str = "val"  # val | test (where the data set has one)
    format: str = "eager"  # eager (the checkpoint) or a format `hpml export` wrote for it
    batch_size: Optional[int] = None  # null: the run's validation batch size
    device: str = "cpu"  # eager only: cpu | cuda | auto (artifacts run on CPU, as exported)
    threads: Optional[int] = None  # torch CPU threads (null = torch's default)
    # Test-time augmentation: none | flip (the mirrored batch too) | multicrop (ten crops of a
    # 1/0.875 upscale, classification); the views' probabilities are averaged.
    tta: str = "none"


def evaluate(cfg: EvalConfig, dataset_overrides: list[str] = ()) -> tuple[dict, list[Path]]:
    """Score the run as `cfg` says and write the report; returns (result, files written)."""
    if cfg.split not in SPLITS:
        raise HpmlError(f"split={cfg.split}: use {' or '.join(SPLITS)} (the training split is what the model learnt)")
    run_dir = Path(cfg.run)
    trained = load_trained(run_dir, cfg.checkpoint)
    dataset_cfg = _dataset(trained, run_dir, dataset_overrides)
    split_cfg = dataset_cfg.eval_split(cfg.split)
    if getattr(split_cfg, "cache", False):  # the decode path gives the cache's pixels, for any split or folder
        split_cfg = dataclasses.replace(split_cfg, cache=False)
    model, artifact, device = _scored_model(trained, cfg)
    model = with_tta(model, cfg.tta, build_task(trained.task, trained.model_cfg.num_classes))
    data = eval_loader(split_cfg, build_datasets(split_cfg, trained.task)[1], device, cfg.batch_size)
    start = time.perf_counter()
    metrics, per_class, confusion, samples = score(model, data, trained)
    seconds = time.perf_counter() - start
    result = {
        "run": str(run_dir), "task": trained.task, "split": cfg.split, "checkpoint": cfg.checkpoint, "tta": cfg.tta,
        "epoch": trained.epoch, "format": cfg.format, "artifact": artifact,
        "dataset": {"name": split_cfg.name, "root": split_cfg.root, "overrides": list(dataset_overrides)},
        "samples": samples, "metrics": metrics, "class_names": trained.class_names(), "per_class": per_class,
        "confusion_matrix": confusion, "unit": SCORES.get(trained.task).unit, "seconds": seconds,
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    headline = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    tta = "" if cfg.tta == "none" else f", tta {cfg.tta}"
    result["line"] = f"eval {cfg.split} ({cfg.format}, checkpoint {cfg.checkpoint}{tta}): {headline} on {samples} samples"
    return result, write_report(result, trained.folder.eval_dir, report_stem(cfg, split_cfg, dataset_overrides))


def _dataset(trained, run_dir: Path, overrides: list[str]):
    """The run's data set config, with the eval's dataset.<key>=value overrides applied."""
    if not overrides:
        return trained.dataset_cfg
    fixed = [o for o in overrides if o.partition("=")[0].removeprefix("dataset.") in FIXED_KEYS]
    if fixed:
        raise HpmlError(f"hpml eval: {fixed[0]} would change what the model sees; eval uses the run's own "
                        f"preprocessing and classes (drop it)")
    cfg = load_config(run_dir, overrides)
    if cfg.model.num_classes != trained.model_cfg.num_classes:
        raise HpmlError(f"{' '.join(overrides)}: that data set has {cfg.model.num_classes} classes but the run's "
                        f"model has {trained.model_cfg.num_classes}; give a folder with the run's classes")
    return cfg.dataset


def _scored_model(trained, cfg: EvalConfig):
    """(callable x -> logits, artifact path or None, the device its inputs go to)."""
    if cfg.format == "eager":
        device = run_device(cfg.device)
        return trained.model.to(device), None, device
    runner, meta = load_predictor(trained.run_dir, cfg.format, cfg.checkpoint)
    if meta.get("preprocess") != trained.preprocess():
        raise HpmlError(f"format={cfg.format}: the artifact was exported with other preprocessing than the run's "
                        f"config now gives; export it again (hpml export run={trained.run_dir} format={cfg.format})")
    artifact = trained.folder.export_dir(meta["format"], cfg.checkpoint) / meta["file"]
    return runner, str(artifact), torch.device("cpu")



def score(model, data, trained) -> tuple[dict, dict, list, int]:
    """(the task's metrics + loss, per-class scores, confusion counts, samples) over `data`."""
    task = build_task(trained.task, trained.model_cfg.num_classes)
    headline, extra = task.metrics(), SCORES.get(trained.task)(trained.model_cfg.num_classes)
    loss_sum, samples = 0.0, 0
    with torch.no_grad():
        for x, y in data:
            logits = task.logits(model(x)).float().cpu()
            y = y.cpu()
            loss_sum += task.criterion(logits, y).item() * len(x)
            headline.update(logits, y)
            extra.update(logits, y)
            samples += len(x)
    if not samples:
        raise HpmlError("hpml eval: the split holds no samples; check dataset.root and the split's folder")
    metrics = {"loss": loss_sum / samples, **{k: float(v) for k, v in headline.compute().items()}}
    per_class, confusion = extra.compute(trained.class_names())
    return metrics, per_class, confusion, samples


def report_stem(cfg: EvalConfig, dataset_cfg, overrides: list[str]) -> str:
    """val, test-int8, val-last, test-<folder name> ...: evals of one run side by side."""
    parts = [cfg.split]
    if cfg.format != "eager":
        parts.append(cfg.format)
    if cfg.checkpoint != "best":
        parts.append(cfg.checkpoint)
    if cfg.tta != "none":
        parts.append(f"tta_{cfg.tta}")
    if overrides:
        tag = Path(dataset_cfg.root).name if any(o.startswith("dataset.root=") for o in overrides) else "custom"
        parts.append(re.sub(r"[^A-Za-z0-9_.]+", "_", tag) or "custom")
    return "-".join(parts)
