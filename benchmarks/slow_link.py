"""A slow link on the local 2-node SLURM cluster (scripts/slurm/local-cluster.sh up --nodes 2):
the same 2-node DDP job with and without a token bucket on node 2's link, alternated (ABBA),
against the prediction bytes all-reduced per step / rate. Usage (as root, from an empty folder):

    python benchmarks/slow_link.py [--rate 20mbit] [--rounds 2] [hpml train overrides]
    python benchmarks/slow_link.py --tiny      # one job per variant: the test suite's form

Prints per variant the median per-step train_s (and the split's comm_exposed_s and compute_s
once recorded) and the growth against 4 bytes x parameters x 2(n-1)/n over the rate.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts/slurm/local-cluster.sh"
JOB = ["model=mlp", "strategy=ddp", "strategy.backend=gloo", "dataset.num_train=256", "dataset.num_val=32",
       "dataset.image_size=16", "dataset.batch_size=16", "trainer.epochs=3", "trainer.warmup_epochs=1",
       "trainer.checkpoint_every=0", "trainer.progress=never", "slurm.nodes=2", "slurm.time=00:05:00"]
KEYS = ("train_s", "comm_exposed_s", "compute_s")
WIRE = 1514 / 1448  # a full frame's bytes on the wire (Ethernet header counted by tbf) per payload byte


def run_job(overrides: list[str]) -> Path:
    out = subprocess.run([sys.executable, "-m", "hpml_bench", "slurm", *JOB, *overrides, "slurm=local",
                          "slurm.submit=true"], capture_output=True, text=True, check=True).stdout.split()
    job = out[-1]
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)
    folders = list(Path("runs").glob(f"{job}-*"))
    if len(folders) != 1 or not (folders[0] / "summary.json").is_file():
        raise SystemExit(f"job {job} left no finished run folder: see runs/slurm/*-{job}.out")
    return folders[0]


def per_step(folder: Path) -> dict[str, float]:
    summary = json.loads((folder / "summary.json").read_text())
    epochs = pd.read_csv(folder / "epochs.csv")
    measured = epochs[epochs["epoch"].isin(summary["measured_epochs"])]
    steps = math.ceil(measured["samples"].iloc[0] / summary["world_size"] / summary["batch_per_rank"])
    return {"parameters": summary["parameters"], "world": summary["world_size"],
            **{k: float(measured[k].median()) / steps for k in KEYS if k in measured}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="20mbit")
    parser.add_argument("--rounds", type=int, default=2, help="ABBA rounds: each runs both variants twice")
    parser.add_argument("--tiny", action="store_true", help="the smallest form (one run each, 2 epochs): what the test suite runs, so the script cannot break unseen")
    args, overrides = parser.parse_known_args()
    if args.tiny:
        overrides = ["trainer.epochs=2", "dataset.num_train=64", *overrides]
    subprocess.run(["bash", str(SCRIPT), "unthrottle", "hpml-n2"], check=True, capture_output=True)
    results: dict[str, list[dict]] = {"unlimited": [], args.rate: []}
    order = [v for _ in range(args.rounds) for v in ("unlimited", args.rate, args.rate, "unlimited")]
    if args.tiny:
        order = ["unlimited", args.rate]
    for variant in order:
        if variant != "unlimited":
            subprocess.run(["bash", str(SCRIPT), "throttle", "hpml-n2", variant], check=True, capture_output=True)
        try:
            results[variant].append(per_step(run_job(overrides)))
        finally:
            subprocess.run(["bash", str(SCRIPT), "unthrottle", "hpml-n2"], check=True, capture_output=True)
        print(f"{variant}: {results[variant][-1]}", flush=True)
    first = results["unlimited"][0]
    bits_per_s = float(args.rate.removesuffix("mbit")) * 1e6
    predicted = 4 * first["parameters"] * 2 * (first["world"] - 1) / first["world"] * WIRE * 8 / bits_per_s
    print(f"\n{first['parameters']:,} parameters, {first['world']} ranks on 2 nodes, node 2 at {args.rate}; "
          f"{len(order) // 2} runs per variant (ABBA); per step, medians over runs:")
    print("| variant | " + " | ".join(k for k in KEYS if k in first) + " |")
    print("|---|" + "---|" * sum(k in first for k in KEYS))
    medians = {v: {k: statistics.median(r[k] for r in rs) for k in KEYS if k in rs[0]} for v, rs in results.items()}
    for variant, values in medians.items():
        print(f"| {variant} | " + " | ".join(f"{v:.4f} s" for v in values.values()) + " |")
    grown = medians[args.rate]["train_s"] - medians["unlimited"]["train_s"]
    print(f"\ntrain_s grew {grown:.3f} s per step; bytes/rate predicts {predicted:.3f} s ({grown / predicted:.2f}x)")


if __name__ == "__main__":
    main()
