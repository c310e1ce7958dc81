"""Inference latency of every deployment format, Python and C++, against eager PyTorch.

    python benchmarks/inference.py --threads 2 --rounds 5 [--models resnet18 hct] [--batches 1 32]

ResNet-18 at 224x224 (3 channels) and HCT at 512x512 (1 channel), random weights (latency
does not depend on them); int8 is calibrated on random inputs here; its accuracy against
fp32 comes from `hpml export format=int8` on a trained run (see the README). Contenders run
alternately within each round (the order reverses every round: ABBA), each round times
`--iters` forward passes per contender; the table shows medians over all rounds. C++ rows
run cpp/build/native_hct --bench (build it with cpp/build.sh first). AOTI and int8 are also
exported with a static batch of one (`export.batch=1`) and timed at batch 1. Without the C++
build the C++ rows are left out (said once). `--tiny`: ResNet-18 at 32 px, TorchScript and
ONNX, one round (seconds; what the test suite runs).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from hpml_bench.deploy.formats import FORMATS, quiet
from hpml_bench.train.config import build_model

MODELS = {"resnet18": dict(size=224, channels=3, classes=1000), "hct": dict(size=512, channels=1, classes=2)}
NATIVE = Path(__file__).resolve().parents[1] / "cpp" / "build" / "native_hct"
STATIC = ("aoti", "int8")
ALL_FORMATS = ("torchscript", "aoti", "onnx", "int8")  # also exported with export.batch=1, timed at batch 1 only


class RandomCalibration:
    def __init__(self, shape):
        self.shape = shape

    def calibration(self):
        gen = torch.Generator().manual_seed(0)
        for _ in range(4):
            yield torch.randn(self.shape, generator=gen)


def write_meta(folder: Path, fmt: str, spec: dict) -> None:
    import json

    c, s = spec["channels"], spec["size"]
    folder.joinpath("meta.json").write_text(json.dumps({
        "task": "classification", "format": fmt, "class_names": [str(i) for i in range(spec["classes"])],
        "preprocess": {"channels": c, "center_crop": 0, "size": [s, s], "scale": 1 / 255,
                       "mean": [0.45] * c, "std": [0.225] * c}}))


def contenders(name: str, spec: dict, work: Path, png: Path, formats=ALL_FORMATS, compiled: bool = True):
    """name -> callable(batch_tensor) returning the seconds of one forward pass."""
    model = build_model(name, num_classes=spec["classes"], in_channels=spec["channels"]).eval()
    example = torch.randn(2, spec["channels"], spec["size"], spec["size"])
    runners = {"eager": model}
    for fmt in formats:
        folder = work / f"{name}-{fmt}"
        folder.mkdir(parents=True, exist_ok=True)
        f = FORMATS.get(fmt)()
        path = folder / f"model{f.suffix}"
        t = time.perf_counter()
        f.save(model, example, path, RandomCalibration(example.shape))
        print(f"  {name} {fmt}: exported in {time.perf_counter() - t:.0f} s", flush=True)
        runners[f"{fmt} (Python)"] = f.load(path)
        if f.runs_in_cpp and NATIVE.is_file():
            write_meta(folder, fmt, spec)
            runners[f"{fmt} (C++)"] = ("cpp", path)
        if fmt in STATIC:  # export.batch=1: the same format with a static batch of one
            static = work / f"{name}-{fmt}-b1"
            static.mkdir(parents=True, exist_ok=True)
            f.save(model, example[:1], static / path.name, RandomCalibration(example.shape))
            runners[f"{fmt} batch=1 (Python)"] = f.load(static / path.name)
            if NATIVE.is_file():
                write_meta(static, fmt, spec)
                runners[f"{fmt} batch=1 (C++)"] = ("cpp", static / path.name)
    if compiled:
        with quiet():
            runners["torch.compile"] = torch.compile(model)
    return runners


def time_python(run, x, iters: int) -> list[float]:
    out = []
    with torch.no_grad():
        for _ in range(iters):
            t = time.perf_counter()
            run(x)
            out.append(time.perf_counter() - t)
    return out


def time_cpp(path: Path, png: Path, batch: int, iters: int, threads: int) -> list[float]:
    proc = subprocess.run([str(NATIVE), str(path), str(png), "--bench", str(iters), "--batch", str(batch),
                           "--threads", str(threads)], capture_output=True, text=True, check=True)
    median = float(proc.stdout.split("median=")[1].split()[0])
    return [median / 1000] * iters  # native_hct reports the median of its own runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--iters", type=int, default=5, help="timed passes per contender per round (batch 1)")
    parser.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = parser.parse_args()
    formats, compiled = ALL_FORMATS, True
    if args.tiny:
        MODELS["resnet18"] = dict(MODELS["resnet18"], size=32)
        args.models, args.batches, args.rounds, args.iters = ["resnet18"], [1], 1, 1
        formats, compiled = ("torchscript", "onnx"), False
    if not NATIVE.is_file():
        print(f"no C++ rows: {NATIVE} is not built (cpp/build.sh builds it)", flush=True)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.models:
            spec = MODELS[name]
            png = work / f"{name}.png"
            from PIL import Image

            Image.new("RGB", (spec["size"], spec["size"]), (90, 120, 150)).save(png)
            every = contenders(name, spec, work, png, formats, compiled)
            for batch in args.batches:
                runners = {k: v for k, v in every.items() if batch == 1 or "batch=1" not in k}
                x = torch.randn(batch, spec["channels"], spec["size"], spec["size"])
                iters = max(1, args.iters if batch == 1 else args.iters // 3)
                times = {k: [] for k in runners}
                for label, run in runners.items():  # warm-up (compiles torch.compile, first-call costs)
                    if not isinstance(run, tuple):
                        time_python(run, x, 2)
                for r in range(args.rounds):
                    order = list(runners) if r % 2 == 0 else list(reversed(runners))
                    for label in order:
                        run = runners[label]
                        times[label] += (time_cpp(run[1], png, batch, iters, args.threads) if isinstance(run, tuple)
                                         else time_python(run, x, iters))
                eager = statistics.median(times["eager"])
                for label, values in times.items():
                    med = statistics.median(values)
                    rows.append((name, spec["size"], batch, label, med * 1000, med / eager))
                    print(f"{name} {spec['size']}px batch {batch:>2} {label:<26} {med * 1000:9.2f} ms  {med / eager:5.2f}x eager",
                          flush=True)
    print("\n| model | input | batch | runtime | latency ms (median) | vs eager |\n|---|---|---|---|---|---|")
    for name, size, batch, label, ms, ratio in rows:
        print(f"| {name} | {size}² | {batch} | {label} | {ms:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
