"""Predictions of a trained run (or an exported artifact) on image files (`hpml predict`, cli/predict.py),
one line per image, the same lines cpp/native_hct prints for the same artifact:
  classification: `<path> <class>:<probability> ...` (top-k, six decimals)
  segmentation:   `<path> foreground=<fraction> mask=<out>/<stem>_mask.png` (the mask is written)
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from hpml_bench.deploy.export import META
from hpml_bench.deploy.formats import FORMATS, per_sample
from hpml_bench.deploy.preprocess import load_input
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder import RunFolder
from hpml_bench.runfolder.checksums import file_sha256
from hpml_bench.train.trained_run import load_trained


def load_predictor(run_dir: Path, fmt: str, checkpoint: str):
    """(callable x -> logits, meta dict) for the eager checkpoint or an exported artifact."""
    if fmt == "eager":
        trained = load_trained(run_dir, checkpoint)
        meta = {"task": trained.task, "preprocess": trained.preprocess(), "class_names": trained.class_names()}
        return trained.model, meta
    folder = RunFolder(run_dir).export_dir(FORMATS.get(fmt).name, checkpoint)
    if not (folder / META).is_file():
        raise HpmlError(f"no {fmt} export in {folder}; run: hpml export run={run_dir} format={fmt}"
                        + ("" if checkpoint == "best" else f" checkpoint={checkpoint}"))
    meta = json.loads((folder / META).read_text())
    artifact = folder / meta["file"]
    if meta.get("sha256") and artifact.is_file() and file_sha256(artifact) != meta["sha256"]:
        raise HpmlError(f"{artifact} is damaged: its sha256 differs from {folder / META}'s; "
                        f"export it again: hpml export run={run_dir} format={fmt}")
    run = FORMATS.get(fmt)().load(artifact)
    return (per_sample(run) if meta.get("input", {}).get("batch") == 1 else run), meta


def predict_line(model, meta: dict, path: Path, topk: int, out: Path) -> str:
    x = load_input(path, meta["preprocess"])
    with torch.no_grad():
        logits = model(x).float()
    if meta["task"] == "segmentation":
        return f"{path} " + segmentation_result(logits, path, out)
    probs = torch.softmax(logits[0], dim=0)
    values, indices = probs.topk(min(topk, len(probs)))
    names = meta["class_names"]
    return f"{path} " + " ".join(f"{names[i]}:{v:.6f}" for v, i in zip(values.tolist(), indices.tolist()))


def segmentation_result(logits: torch.Tensor, path: Path, out: Path) -> str:
    """Writes the argmax mask (class k as k * 255 // (classes - 1)) and returns its summary."""
    from PIL import Image

    classes = logits.shape[1]
    mask = logits[0].argmax(0).to(torch.uint8)
    foreground = (mask > 0).float().mean().item()
    out.mkdir(parents=True, exist_ok=True)
    file = out / f"{path.stem}_mask.png"
    Image.fromarray((mask.to(torch.int32) * (255 // max(1, classes - 1))).to(torch.uint8).numpy()).save(file)
    return f"foreground={foreground:.6f} mask={file}"
