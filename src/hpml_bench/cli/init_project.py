"""`hpml init [DIR]`: a starter project -- your model, your data set, a recipe and a bench.

It writes conf/ (searched before hpml's own configs when hpml runs in DIR), mynet.py (an
nn.Module hpml builds through model=custom) and a few generated images in the ImageFolder
layout, so `hpml train experiment=mine` runs offline at once and a user's first own run is one
edit away (their class in mynet.py, their folder in conf/dataset/mydata.yaml).
"""
from __future__ import annotations

import io
import os
import random
from pathlib import Path

from hpml_bench.config.search_path import HPML_CONF
from hpml_bench.errors import HpmlError
from hpml_bench.runfolder.writes import atomic_write_text

MYNET_PY = '''\
"""My model. hpml calls Net(num_classes=..., in_channels=...) with the data set's values
(plus model.kwargs); conf/model/mynet.yaml names it, so `model=mynet` trains it."""
from torch import nn


class Net(nn.Module):
    """A small CNN: replace it with your own network (any nn.Module)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        return self.head(self.features(x))
'''

# path in the project -> text; the first comment line is what `hpml list` shows
FILES = {
    "conf/model/mynet.yaml": """\
# my model: class Net in mynet.py (model.target=<module>:<callable> names another)
defaults:
  - custom
  - _self_
target: mynet:Net
kwargs:
  width: 16
""",
    "conf/dataset/mydata.yaml": """\
# my images: <root>/<train|test>/<class>/<image> (hpml init wrote a few into data/)
defaults:
  - image_folder
  - _self_
root: data  # relative to the folder hpml runs in; put your own folder here
num_classes: 2
native_size: 32
batch_size: 8
""",
    "conf/experiment/mine.yaml": """\
# @package _global_
# my recipe: mynet on my images for 3 epochs (hpml train experiment=mine)
defaults:
  - override /model: mynet
  - override /dataset: mydata
optimizer:
  lr: 3.0e-3
trainer:
  epochs: 3
""",
    "conf/bench/mybench.yaml": """\
# my bench: mynet on one process vs DDP with 2 processes (hpml bench bench=mybench bench.scale=smoke)
defaults:
  - schema
  - _self_
name: mybench
description: mynet on my images, one process vs DistributedDataParallel with 2 processes.
needs: nothing beyond this folder (CPU is enough)
full:
  base: [experiment=mine]
  include:
    - {strategy: single}
    - {strategy: ddp, strategy.nproc_per_node: 2}
  baseline: {strategy: single}
smoke:
  base: [experiment=mine, trainer.epochs=1, trainer.checkpoint_every=0, device=cpu]
  env: {OMP_NUM_THREADS: "1"}
  include:
    - {strategy: single}
    - {strategy: ddp, strategy.nproc_per_node: 2}
  baseline: {strategy: single}
""",
    "mynet.py": MYNET_PY,
}
CLASSES = ("circle", "square")
IMAGES_PER_SPLIT = {"train": 24, "test": 8}  # per class: enough for a few steps, tiny on disk
SIZE = 32

NEXT_STEPS = """\
next, in that folder:{cd}
  hpml train experiment=mine                     # mynet on the generated images in data/
  hpml train --cfg job experiment=mine           # the composed config, nothing run
  hpml bench bench=mybench bench.scale=smoke     # one process vs DDP with 2 processes
  hpml list models                               # mynet, marked (yours)
Your own: edit Net in mynet.py, and root: in conf/dataset/mydata.yaml."""


def image_files() -> list[str]:
    return [f"data/{split}/{label}/{label}_{i:03d}.png"
            for split, count in IMAGES_PER_SPLIT.items() for label in CLASSES for i in range(count)]


def _shape_png(label: str, rng: random.Random) -> bytes:
    """A circle or a square of a random colour, size and place on a random background."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE), tuple(rng.randrange(0, 96) for _ in range(3)))
    side = rng.randrange(SIZE // 3, SIZE - 4)
    x, y = rng.randrange(0, SIZE - side), rng.randrange(0, SIZE - side)
    colour = tuple(rng.randrange(128, 256) for _ in range(3))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if label == "circle" else draw.rectangle)([x, y, x + side, y + side], fill=colour)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def init_project(folder: Path) -> list[Path]:
    """Write the starter project into `folder`; refuses (writing nothing) if any file exists."""
    folder = folder.expanduser().resolve()
    if (folder / "conf").resolve() == HPML_CONF:
        raise HpmlError(f"{folder} is hpml's own checkout; run hpml init in (or for) a folder of your own")
    if folder.exists() and not folder.is_dir():
        raise HpmlError(f"{folder} is a file; give hpml init a folder")
    names = [*FILES, *image_files()]
    taken = [name for name in names if (folder / name).exists()]
    if taken:
        raise HpmlError(f"{folder / taken[0]} already exists ({len(taken)} of the starter files do); "
                        f"hpml init writes a new project: give it another folder, or move those files away")
    for name, text in FILES.items():
        atomic_write_text(folder / name, text)
    rng = random.Random(0)  # the same images every time
    for name in image_files():
        _write_bytes(folder / name, _shape_png(Path(name).parent.name, rng))
    return [folder / name for name in names]


def init_command(args: list[str]) -> int:
    """`hpml init [DIR]` (default: the working directory)."""
    if any(a in ("-h", "--help") for a in args) or len(args) > 1:
        print("usage: hpml init [DIR]   write a starter project (conf/, mynet.py, data/) into DIR (default .)")
        return 0 if len(args) <= 1 else 2
    folder = Path(args[0] if args else ".")
    written = init_project(folder)
    where = folder.expanduser().resolve()
    print(f"wrote a starter project in {where}:")
    for name in FILES:
        print(f"  {name}")
    print(f"  data/  ({len(written) - len(FILES)} generated images: {', '.join(CLASSES)}; train/ and test/)")
    print(NEXT_STEPS.format(cd="" if where == Path.cwd().resolve() else f"\n  cd {where}"))
    return 0
