"""`hpml bench ... bench.launcher=slurm` on the real 2-node local cluster (scripts/slurm/local-cluster.sh
up --nodes 2): cells of 1 and 2 tasks, one over 2 nodes, one whose job fails, one requeued mid-run."""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TINY
from tests.test_slurm_cluster import job_field, wait_gone
from tests.test_slurm_multinode import NODES, two_nodes  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slurm
BASE = [*TINY, "model=mlp", "strategy=ddp", "strategy.backend=gloo", "trainer.checkpoint_every=0"]
# ~1 s epochs (as test_slurm_cluster's LONG): long enough to signal the job mid-run
LONG = {"strategy.nproc_per_node": 1, "trainer.epochs": 3, "dataset.num_train": 8192, "dataset.batch_size": 16,
        "trainer.checkpoint_every": 1}
CELLS = [{"strategy.nproc_per_node": 1}, {"strategy.nproc_per_node": 2},
         {"strategy.nproc_per_node": 1, "slurm.nodes": 2},
         {"strategy.nproc_per_node": 1, "slurm.command": "/bin/false"}, LONG]


def test_bench_cells_run_as_jobs_on_two_nodes_with_a_failure_and_a_requeue(two_nodes, hpml, tmp_path):  # noqa: F811
    include = "".join(f"\n    - {json.dumps(c)}" for c in CELLS)
    bench = tmp_path / "cl.yaml"
    bench.write_text(f"name: cl\nfull:\n  base: [{', '.join(BASE)}]\n  include:{include}\n  env: {{OMP_NUM_THREADS: '1'}}\n")
    args = ["bench", f"bench={bench}", "bench.launcher=slurm", "slurm=local", "bench.poll_s=1"]
    start = time.time()
    assert hpml(*args, "bench.wait=false").rc == 0
    folder = tmp_path / "runs/bench/cl"
    jobs = json.loads((folder / "slurm_jobs.json").read_text())
    assert len(jobs) == 5 and len({j["job"] for j in jobs.values()}) == 5
    long_key = next(k for k in jobs if "trainer.epochs-3" in k)
    long_dir = folder / "cells" / long_key.split("__rep")[0] / "rep0"
    end = time.time() + 120
    while not (long_dir / "epochs.csv").is_file():  # epoch 1 done: the signal lands in epoch 2
        assert time.time() < end, Path(jobs[long_key]["log"]).read_text()[-2000:]
        time.sleep(0.2)
    subprocess.run(["scancel", "--signal=USR1", jobs[long_key]["job"]], check=True)
    wait_gone(jobs[long_key]["job"], timeout=240)  # (asks for the requeued start once the credential expired)
    result = hpml(*args)  # the same command: waits for the rest and gathers
    wall = time.time() - start
    assert result.rc == 1, result.err  # one cell failed
    table = pd.read_csv(folder / "bench.csv").set_index("cell")
    statuses = {cell: table.loc[cell, "status"] for cell in table.index}
    failed = [c for c, s in statuses.items() if s == "failed"]
    assert len(statuses) == 5 and len(failed) == 1 and "slurm.command" in failed[0], statuses
    assert "FAILED" in table.loc[failed[0], "reason"] and "log " in table.loc[failed[0], "reason"]
    sizes = {c: int(table.loc[c, "world_size"]) for c in statuses if c not in failed}
    assert sorted(sizes.values()) == [1, 1, 2, 2], sizes
    two_node = next(c for c in statuses if "slurm.nodes-2" in c)
    ranks = pd.read_csv(folder / "cells" / two_node / "rep0" / "ranks.csv")
    assert set(ranks["host"]) == NODES
    assert job_field(jobs[long_key]["job"], "Restarts") == "1"
    assert len(pd.read_csv(long_dir / "epochs.csv")) == 3
    assert "resuming" in Path(jobs[long_key]["log"]).read_text()
    print(f"5-cell bench on the 2-node cluster: {wall:.0f} s from submission to bench.csv")
