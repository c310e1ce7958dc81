"""Measure preemption on the local SLURM cluster (scripts/slurm/local-cluster.sh up):
signal -> checkpoint on disk, and requeue -> resumed run. Usage (from an empty folder):

    python benchmarks/slurm_requeue.py [hpml train overrides]     # default: ResNet-18 on shapes
    python benchmarks/slurm_requeue.py --tiny   # an MLP on 16-px shapes: the test suite's form (needs the cluster)

Submits one job with `hpml slurm ... slurm=local slurm.submit=true`, sends it
`scancel --signal=USR1` two seconds (--tiny: half a second) into epoch 2, and reads the times
hpml logs. Gives up (exit 1, the job cancelled) when the job has not got there in DEADLINE_S.
"""
from __future__ import annotations

import datetime
import re
import subprocess
import sys
import time
from pathlib import Path

TINY = "--tiny" in sys.argv[1:]
# --tiny: epochs of about a second on an idle 2-core machine, so the signal lands mid-epoch.
ARGS = [a for a in sys.argv[1:] if a != "--tiny"] or (
    ["model=mlp", "dataset.image_size=16", "dataset.batch_size=16", "dataset.num_train=8192", "dataset.num_val=32",
     "trainer.epochs=3", "trainer.progress=never"] if TINY else
    ["trainer.epochs=3", "dataset.num_train=800", "trainer.progress=never"])
DEADLINE_S = 600


def wait(job: str, until, what: str) -> None:
    """Poll until `until()`; past DEADLINE_S cancel the job and stop in one line."""
    start = time.monotonic()
    while not until():
        if time.monotonic() - start > DEADLINE_S:
            subprocess.run(["scancel", job])
            raise SystemExit(f"job {job}: no {what} after {DEADLINE_S} s; cancelled")
        time.sleep(0.2)


def main() -> None:
    out = subprocess.run([sys.executable, "-m", "hpml_bench", "slurm", *ARGS, "slurm=local", "slurm.submit=true"],
                         capture_output=True, text=True, check=True).stdout.split()
    job = out[-1]

    def log_file():
        return next(iter(Path("runs/slurm").glob(f"*-{job}.out")), None)

    wait(job, lambda: log_file() is not None and "epoch 1/" in log_file().read_text(), "epoch 1 in its log")
    log = log_file()
    time.sleep(0.5 if TINY else 2)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait(job, lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip(),
         "end")
    text = log.read_text()
    written = re.search(r"written ([\d.]+) s after the signal", text).group(1)
    stamps = [datetime.datetime.strptime(m, "%H:%M:%S.%f")
              for m in re.findall(r"(?:requeueing SLURM job \S+|resuming .*) \((\d\d:\d\d:\d\d\.\d+)\)", text)]
    print(re.search(r"stopped at .*", text).group(0))
    print(f"signal -> checkpoint on disk: {written} s")
    print(f"requeue -> resumed (checkpoint loaded, first step next): {(stamps[1] - stamps[0]).total_seconds():.1f} s")


if __name__ == "__main__":
    main()
