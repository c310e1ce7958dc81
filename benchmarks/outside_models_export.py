"""Which export formats take which outside models: torchvision / timm / custom x every format.

Each model gets a run folder with random weights (tests/deploy_helpers.make_run: no training),
then `hpml export` per format; a refused format gives its one-line reason. Writes a markdown
table to stdout. Run from the repository root:
    PYTHONPATH=src:tests python benchmarks/outside_models_export.py /tmp/outside_export
    PYTHONPATH=src:tests python benchmarks/outside_models_export.py --tiny /tmp/x   # one model, two formats
"""
from __future__ import annotations

import contextlib
import io
import os
import time
from pathlib import Path

from deploy_helpers import USER_MYNET, make_run

from hpml_bench.cli.main import main

MYNET = USER_MYNET
COMMON = ["dataset.num_train=32", "dataset.num_val=16", "dataset.batch_size=8", "dataset.image_size=16"]
MODELS = {
    "custom mynet:MyNet": ["model=custom", "model.target=mynet:MyNet"],
    "timm test_resnet": ["model=timm", "model.arch=test_resnet"],
    "timm test_efficientnet": ["model=timm", "model.arch=test_efficientnet"],
    "timm test_convnext": ["model=timm", "model.arch=test_convnext"],
    "timm test_vit": ["model=timm", "model.arch=test_vit"],
    "torchvision mobilenet_v3_small": ["model=torchvision", "model.arch=mobilenet_v3_small"],
    "torchvision squeezenet1_1": ["model=torchvision", "model.arch=squeezenet1_1", "dataset.image_size=32"],
    "torchvision lraspp_mobilenet_v3_large (seg)": ["model=torchvision", "model.arch=lraspp_mobilenet_v3_large",
                                                    "dataset=synthetic"],
}
FORMATS = ["torchscript", "exported", "aoti", "onnx", "int8"]
TINY_MODELS, TINY_FORMATS = ("custom mynet:MyNet", "timm test_vit"), ["torchscript", "onnx"]  # the quick ones


def export(run: Path, fmt: str) -> str:
    err, out = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = main(["export", f"run={run}", f"format={fmt}"])
    if rc == 0:
        return f"ok ({time.perf_counter() - start:.0f} s)"
    return "no: " + err.getvalue().strip().splitlines()[-1].removeprefix("error: ").replace("|", "/")[:160]


def main_() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="outside_export")
    parser.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = parser.parse_args()
    models = {k: v for k, v in MODELS.items() if k in TINY_MODELS} if args.tiny else MODELS
    formats = TINY_FORMATS if args.tiny else FORMATS
    root = Path(args.folder).resolve()
    root.mkdir(parents=True, exist_ok=True)
    (root / "mynet.py").write_text(MYNET)
    os.chdir(root)
    print("| model | " + " | ".join(formats) + " |")
    print("|---" * (len(formats) + 1) + "|")
    for i, (name, overrides) in enumerate(models.items()):
        run = make_run(root / f"run{i}", [*COMMON, *overrides])
        cells = [export(run, fmt) for fmt in formats]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main_()
