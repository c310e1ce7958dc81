"""hpml cam run=<run folder> images=<image file | folder> [checkpoint=best|last|ema] [method=gradcam|gradcam++|scorecam|eigencam] [target=<class name or index>] [device=auto|cpu|cuda] [--gif]

Grad-CAM heat maps of a trained run on images, into <run>/cam/: per image a PNG with the input,
the class activation map and their overlay; --gif also assembles the overlays of a folder of
frames (sorted by name) into an animated GIF."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from hpml_bench.cli.args import keys_help, parse_args, wants_help
from hpml_bench.eval.cam import write_cams


@dataclass
class CamConfig:
    run: str = ""  # the run folder
    images: str = ""  # an image file, or a folder of images (frames, with --gif)
    checkpoint: str = "best"  # best | last | ema (the weights' moving average, runs with trainer.ema_decay)
    method: str = "gradcam"  # gradcam | gradcam++ | scorecam | eigencam
    target: Optional[str] = None  # the class to explain, by name or index (null: the predicted class)
    device: str = "auto"  # auto | cpu | cuda
    gif: bool = False  # also an animated GIF of the overlays of a folder of frames (--gif)


def cam_command(args: list[str]) -> int:
    """The `hpml cam` command: prints each file written."""
    if wants_help(args):
        print(keys_help(CamConfig, __doc__))
        return 0
    cfg = parse_args(args, CamConfig, "cam", required=("run", "images"))
    target = None if cfg.target is None else str(cfg.target)
    for path in write_cams(Path(cfg.run), Path(cfg.images), cfg.checkpoint, cfg.method, target, cfg.gif, cfg.device):
        print(path)
    return 0
