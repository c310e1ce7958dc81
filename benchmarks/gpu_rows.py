"""Helpers of benchmarks/gpu.sh: make the JPEG folder its folder rows read, and print the one
table of issue 19's GPU targets (and the CIFAR-10 speed recipe's time to 94 %) from the run
folders gpu.sh wrote.

    python benchmarks/gpu_rows.py jpegs <folder> <count>   # <folder>/{train,test}/class<k>/<i>.jpg
    python benchmarks/gpu_rows.py table <out>              # <out>/runs/<row>/summary.json -> table
"""
from __future__ import annotations

import json
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

CLASSES = 10
SIDE = 256  # JPEGs a little larger than the 224 px the model sees: the loader resizes, as with ImageNet


def _write_jpeg(job: tuple[str, int]) -> None:
    import numpy as np
    from PIL import Image

    path, seed = job
    rng = np.random.default_rng(seed)
    # Smooth random images (a coarse grid upscaled): JPEG sizes like photos', not like noise's.
    coarse = rng.integers(0, 256, (SIDE // 16, SIDE // 16, 3), dtype=np.uint8)
    Image.fromarray(coarse).resize((SIDE, SIDE), Image.BICUBIC).save(path, quality=90)


def make_jpegs(folder: Path, count: int) -> None:
    jobs = []
    for split, n in (("train", count), ("test", max(count // 16, CLASSES))):
        for i in range(n):
            path = folder / split / f"class{i % CLASSES}" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                jobs.append((str(path), i + (0 if split == "train" else 10**7)))
    with ProcessPoolExecutor() as pool:
        list(pool.map(_write_jpeg, jobs, chunksize=64))
    print(f"{folder}: {count} train JPEGs ({len(jobs)} written now)")


def _summary(out: Path, row: str) -> Optional[dict]:
    path = out / "runs" / row / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _loop_ratio(out: Path) -> Optional[float]:
    path = out / "loop_overhead.txt"
    if not path.is_file():
        return None
    match = re.search(r"^\| hpml \| [\d.]+ \| ([\d.]+) \|$", path.read_text(), flags=re.MULTILINE)
    return float(match.group(1)) if match else None


def _speed(s: Optional[dict]) -> str:
    if s is None:
        return "not measured"
    mfu = f", MFU {s['median_mfu'] * 100:.1f}%" if s.get("median_mfu") is not None else ""
    tflops = f", {s['median_tflops']:.1f} TFLOP/s" if s.get("median_tflops") is not None else ""
    return f"{s['median_samples_per_s']:,.0f} img/s{tflops}{mfu}"


# The step split of train_s (branch `split`'s summary keys), as the table shows it.
SPLIT = (("compute_s", "compute"), ("comm_s", "comm"), ("comm_exposed_s", "exposed"), ("overhead_s", "overhead"))


def _median(s: dict, key: str) -> Optional[float]:
    return s.get(f"median_{key}", s.get(key))


def _split(s: Optional[dict]) -> str:
    """'compute 0.412 s, comm 0.020 s, exposed 0.001 s, overhead 0.003 s of train_s 0.416 s'."""
    if s is None:
        return "not measured"
    if _median(s, "comm_s") is None:
        return f"no split in summary.json (train_s {s['median_train_s']:.3f} s)"
    parts = [f"{name} {_median(s, key):.3f} s" for key, name in SPLIT if _median(s, key) is not None]
    return f"{', '.join(parts)} of train_s {s['median_train_s']:.3f} s"


def _exposed_share(s: Optional[dict]) -> Optional[float]:
    exposed = _median(s, "comm_exposed_s") if s else None
    return None if exposed is None or not s["median_train_s"] else exposed / s["median_train_s"]


def _nccl(s: Optional[dict]) -> str:
    """NCCL's version and what one step all-reduced, how fast (DDP at world size 1: a copy on the GPU)."""
    if s is None:
        return "not measured"
    version = (s.get("hardware") or {}).get("nccl") or "version unknown"
    sent, rate = _median(s, "comm_bytes"), _median(s, "comm_gbps")
    moved = f"; {sent / 1e6:,.1f} MB per step" if sent is not None else "; no comm_bytes in summary.json"
    return f"NCCL {version}{moved}" + (f" at {rate:.1f} GB/s" if rate is not None else "")


def _gpu_state(s: Optional[dict]) -> str:
    """NVML's view of the run: clocks against the GPU's ceiling, power against its limit, heat, throttling."""
    hw = (s or {}).get("hardware")
    if not hw:
        return "not measured" if s is None else "no hardware in summary.json"
    gpu = (hw.get("gpus") or [{}])[0]
    sm, power, temp = (s.get(f"median_gpu_{k}") for k in ("sm_clock_mhz", "power_w", "temp_c"))
    text = f"SM {sm:.0f} MHz (max {gpu.get('max_sm_clock_mhz')})" if sm is not None else "no clock samples"
    text += f", {power:.0f} W of {gpu.get('power_limit_w')} W" if power is not None else ""
    text += f", {temp:.0f} C" if temp is not None else ""
    return (f"{text}, throttle {hw.get('throttle', '?')}; driver {hw.get('driver')}, CUDA {hw.get('cuda_driver')} "
            f"(torch's {hw.get('cuda_runtime')}), PCIe {gpu.get('pcie')}")


def _held_back(s: Optional[dict]) -> str:
    hw = (s or {}).get("hardware") or {}
    if "throttle" not in hw:
        return "–"
    slowdowns = ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")
    return "missed" if any(r in hw["throttle"] for r in slowdowns) else "met"


SPEED_TARGET = 0.94  # experiment=cifar10_speed's target: validation accuracy of its EMA weights


def time_to_accuracy(run: Path, target: float) -> Optional[tuple[float, int, float]]:
    """(seconds, epoch, accuracy) at the end of the first epoch whose accuracy (the EMA weights'
    where kept) reaches `target`, counting training and validation (run_s + val_s), not start-up;
    None when no epoch did (or the run is missing)."""
    import pandas as pd

    path = run / "epochs.csv"
    if not path.is_file():
        return None
    epochs = pd.read_csv(path)
    acc = epochs["val_ema_acc"] if "val_ema_acc" in epochs else epochs["val_acc"]
    wall = (epochs["run_s"] + epochs["val_s"]).cumsum()
    hit = [i for i, a in enumerate(acc) if a >= target]
    return (float(wall.iloc[hit[0]]), hit[0] + 1, float(acc.iloc[hit[0]])) if hit else None


def _speed_recipe(out: Path) -> tuple[str, str]:
    run = out / "runs" / "cifar10_speed"
    if not (run / "epochs.csv").is_file():
        return "not measured", "–"
    reached = time_to_accuracy(run, SPEED_TARGET)
    if reached is None:
        import pandas as pd

        last = pd.read_csv(run / "epochs.csv").iloc[-1]
        return f"not reached (final {last.get('val_ema_acc', last['val_acc']):.4f})", "missed"
    seconds, epoch, acc = reached
    return f"{seconds:.1f} s (epoch {epoch}, {acc:.4f})", "met"


def _verdict(value: Optional[float], target: float) -> str:
    return "–" if value is None else ("met" if value >= target else "missed")


def _at_most(value: Optional[float], target: float) -> str:
    return "–" if value is None else ("met" if value <= target else "missed")


def table_rows(out: Path) -> list[tuple[str, str, str, str]]:
    """(measure, target, measured, verdict) for each row of the issue's table."""
    runs = {row: _summary(out, row) for row in ("r50_synth", "r50_ddp1", "r50_fsdp1", "r50_cache", "r50_jpeg_gpu",
                                                "r18_32", "r18_32_ro")}
    synth = runs["r50_synth"]
    base = synth["median_samples_per_s"] if synth else None

    def ratio(row: str) -> Optional[float]:
        return runs[row]["median_samples_per_s"] / base if runs[row] and base else None

    def ratio_text(row: str) -> str:
        r = ratio(row)
        return "not measured" if r is None else f"{r:.3f} ({_speed(runs[row])})"

    r18 = [s for s in (runs["r18_32"], runs["r18_32_ro"]) if s]
    best18 = max((s["median_samples_per_s"] for s in r18), default=None)
    loop = _loop_ratio(out)
    device = (synth or next((s for s in runs.values() if s), None) or {}).get("device", "no GPU run found")
    return [
        ("device", "", device, ""),
        ("ResNet-50 224 bf16 channels-last compiled, synthetic on the device", ">= 4,500 img/s, MFU printed",
         _speed(synth), _verdict(base, 4500)),
        ("the same from the `hpml prepare` cache", ">= 0.95 x synthetic", ratio_text("r50_cache"),
         _verdict(ratio("r50_cache"), 0.95)),
        ("the same from a JPEG folder decoded on the GPU", ">= 0.85 x synthetic", ratio_text("r50_jpeg_gpu"),
         _verdict(ratio("r50_jpeg_gpu"), 0.85)),
        ("ResNet-18 32 px batch 512 (compile=default / reduce-overhead)", ">= 25,000 img/s",
         f"{_speed(runs['r18_32'])} / {_speed(runs['r18_32_ro'])}", _verdict(best18, 25000)),
        ("the GPU during the synthetic row (NVML: clocks, power, temperature, throttle)", "clocks not held back",
         _gpu_state(synth), _held_back(synth)),
        ("DDP world size 1 / single (NCCL)", ">= 0.97", ratio_text("r50_ddp1"), _verdict(ratio("r50_ddp1"), 0.97)),
        ("DDP world size 1: train_s split (one rank: its all-reduce is a copy)", "exposed <= 2% of train_s",
         _split(runs["r50_ddp1"]), _at_most(_exposed_share(runs["r50_ddp1"]), 0.02)),
        ("FSDP world size 1 / single (NCCL)", "reported", ratio_text("r50_fsdp1"), "–"),
        ("FSDP world size 1: train_s split", "reported", _split(runs["r50_fsdp1"]), "–"),
        ("NCCL (DDP world size 1): version, bytes and GB/s per step", "reported", _nccl(runs["r50_ddp1"]), "–"),
        ("hpml / plain loop on the GPU (loop_overhead.py --device cuda, 5 rounds)", ">= 0.98",
         "not measured" if loop is None else f"{loop:.3f}", _verdict(loop, 0.98)),
        ("CIFAR-10 speed recipe (experiment=cifar10_speed): time to 94 % val acc, EMA weights, train + val",
         "94 % reached; time printed", *_speed_recipe(out)),
    ]


def print_table(out: Path) -> str:
    lines = ["| measure | target | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {m} | {t} | {v} | {d} |" for m, t, v, d in table_rows(out)]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_table.md").write_text(text)
    print(text, end="")
    return text


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "jpegs":
        make_jpegs(Path(argv[1]), int(argv[2]))
    elif len(argv) == 2 and argv[0] == "table":
        print_table(Path(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
