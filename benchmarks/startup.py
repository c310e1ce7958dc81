"""What every run and bench cell pays before it trains: the import of hpml_bench.train.run, the
seconds from `hpml train`'s start to its first finished step (summary.json startup_s), and the
wall time of a whole `hpml train`. Each measure is a fresh process, as a user runs it.

--src DIR [DIR ...] compares source trees (e.g. a checkout of main before a change and this
one): rounds alternate between them (A B, B A, ...) so that machine load hits both alike;
medians are printed per tree.

    python benchmarks/startup.py --rounds 5                      # import + first step
    python benchmarks/startup.py --rounds 3 --full               # + the default 4-epoch run
    python benchmarks/startup.py --src /tmp/before/src src --rounds 5
    python benchmarks/startup.py --tiny                          # one round: the test suite's form
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HPML = [sys.executable, "-c", "import sys; from hpml_bench.cli.main import main; sys.exit(main())"]
PROBE = "import time; t = time.perf_counter(); import hpml_bench.train.run; print(time.perf_counter() - t)"


def _env(src: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def import_s(src: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE], env=_env(src), capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def train(src: str, overrides: list[str]) -> tuple[float, float]:
    """(wall seconds of the whole process, its summary.json startup_s)."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        proc = subprocess.run([*HPML, "train", *overrides, f"run_dir={tmp}/run", "trainer.progress=never"],
                              env=_env(src), cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"hpml train failed ({src}):\n{proc.stderr[-3000:]}")
        wall = time.perf_counter() - start
        return wall, json.loads((Path(tmp) / "run" / "summary.json").read_text())["startup_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", nargs="+", default=[str(Path(__file__).resolve().parents[1] / "src")])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--full", action="store_true", help="also time the default `hpml train` (4 epochs)")
    parser.add_argument("--tiny", action="store_true", help="the smallest form (seconds, CPU): what the test suite runs, so the script cannot break unseen")
    args = parser.parse_args()
    if args.tiny:
        args.rounds, args.full = 1, False
    first_step = ["trainer.epochs=1", "trainer.max_steps_per_epoch=1", "trainer.checkpoint_every=0"]
    results = {src: {"import_s": [], "startup_s": [], "default_wall_s": [], "default_startup_s": []} for src in args.src}
    for r in range(args.rounds):
        for src in args.src if r % 2 == 0 else args.src[::-1]:
            row = results[src]
            row["import_s"].append(import_s(src))
            row["startup_s"].append(train(src, first_step)[1])
            if args.full:
                wall, startup = train(src, [])
                row["default_wall_s"].append(wall)
                row["default_startup_s"].append(startup)
            print(f"round {r + 1} {src}: " + "  ".join(f"{k} {v[-1]:.2f}" for k, v in row.items() if v), flush=True)
    print(f"medians over {args.rounds} rounds (load average at the end: {os.getloadavg()[0]:.1f}):")
    for src, row in results.items():
        print(f"  {src}: " + "  ".join(f"{k} {statistics.median(v):.2f}" for k, v in row.items() if v))


if __name__ == "__main__":
    main()
