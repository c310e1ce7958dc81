"""hpml predict run=<run folder> images=<file|folder> [format=eager|torchscript|aoti|exported|onnx|int8] [key=value ...]

Prints one line per image, the same lines cpp/native_hct prints for the same artifact:
  classification: `<path> <class>:<probability> ...` (top-k, six decimals)
  segmentation:   `<path> foreground=<fraction> mask=<out>/<stem>_mask.png` (the mask is written)"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hpml_bench.cli.args import keys_help, parse_args, set_threads, wants_help
from hpml_bench.deploy.predict import load_predictor, predict_line
from hpml_bench.deploy.preprocess import list_images


@dataclass
class PredictConfig:
    run: str = ""  # the run folder
    images: str = ""  # an image file or a folder of images
    format: str = "eager"  # eager (the checkpoint) or an exported format
    checkpoint: str = "best"  # best | last | ema (the weights' moving average, runs with trainer.ema_decay)
    topk: int = 3  # classes printed per image
    out: str = "predictions"  # where segmentation masks are written
    threads: Optional[int] = None  # torch CPU threads (null = torch's default)


def predict_command(args: list[str]) -> int:
    if wants_help(args):
        print(keys_help(PredictConfig, __doc__))
        return 0
    cfg = parse_args(args, PredictConfig, "predict", required=("run", "images"))
    set_threads(cfg.threads)
    model, meta = load_predictor(Path(cfg.run), cfg.format, cfg.checkpoint)
    for path in list_images(Path(cfg.images)):
        print(predict_line(model, meta, path, cfg.topk, Path(cfg.out)), flush=True)
    return 0


