"""Measure preemption on the local SLURM cluster (scripts/slurm/local-cluster.sh up):
signal -> checkpoint on disk, and requeue -> resumed run. Usage (from an empty folder):

    python benchmarks/slurm_requeue.py [hpml train overrides]     # default: ResNet-18 on shapes

Submits one job with `hpml slurm ... slurm=local slurm.submit=true`, sends it
`scancel --signal=USR1` two seconds into epoch 2, and reads the times hpml logs.
"""
from __future__ import annotations

import datetime
import re
import subprocess
import sys
import time
from pathlib import Path

ARGS = sys.argv[1:] or ["trainer.epochs=3", "dataset.num_train=800", "trainer.progress=never"]


def main() -> None:
    out = subprocess.run([sys.executable, "-m", "hpml_bench", "slurm", *ARGS, "slurm=local", "slurm.submit=true"],
                         capture_output=True, text=True, check=True).stdout.split()
    job = out[-1]
    log = Path("runs/slurm").glob(f"*-{job}.out")
    log = next(iter(log), None)
    while log is None or "epoch 1/" not in log.read_text():
        time.sleep(0.2)
        log = log or next(iter(Path("runs/slurm").glob(f"*-{job}.out")), None)
    time.sleep(2)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)
    text = log.read_text()
    written = re.search(r"written ([\d.]+) s after the signal", text).group(1)
    stamps = [datetime.datetime.strptime(m, "%H:%M:%S.%f")
              for m in re.findall(r"(?:requeueing SLURM job \S+|resuming .*) \((\d\d:\d\d:\d\d\.\d+)\)", text)]
    print(re.search(r"stopped at .*", text).group(0))
    print(f"signal -> checkpoint on disk: {written} s")
    print(f"requeue -> resumed (checkpoint loaded, first step next): {(stamps[1] - stamps[0]).total_seconds():.1f} s")


if __name__ == "__main__":
    main()
