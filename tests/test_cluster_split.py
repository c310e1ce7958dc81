"""On the real 2-node local cluster (scripts/slurm/local-cluster.sh up --nodes 2): seed 003's node
axis end to end (its recipe, 1 vs 2 nodes, the split per cell in its table), and one node's link
slowed for real with a token bucket (tc tbf inside its namespace): each step's communication
grows by the bytes it all-reduces over the limited rate, while compute stays put.

Run these only under `flock /tmp/hpml-cluster.lock` on a shared machine: another test's jobs
must not share the slowed link.
"""
from __future__ import annotations

import contextlib
import json
import math
import subprocess

import pandas as pd
import pytest

from tests.conftest import TINY
from tests.test_slurm_cluster import ROOT, failed_log, job_field, run_folder, submit, wait_gone
from tests.test_slurm_multinode import NODES, two_nodes  # noqa: F401 (the fixture)

pytestmark = pytest.mark.slurm
SCRIPT = ROOT / "scripts/slurm/local-cluster.sh"
# The step split's columns in summary.json and bench.csv.
SPLIT = ("compute_s", "comm_s", "comm_exposed_s", "bubble_s", "overhead_s")


def test_seed_003s_node_axis_runs_one_and_two_nodes_with_the_split_in_its_table(two_nodes, hpml, tmp_path):  # noqa: F811
    result = hpml("bench", "bench=retinopathy_cpu_gpu", "bench.scale=smoke", "bench.launcher=slurm", "slurm=local",
                  "bench.poll_s=1")
    assert result.rc == 0, result.out + result.err
    folder = tmp_path / "runs/bench/retinopathy_cpu_gpu-smoke"
    table = pd.read_csv(folder / "bench.csv")
    done = table[table["status"] == "done"].set_index("slurm.nodes")
    assert sorted(done.index) == [1, 2] and set(done["device"]) == {"cpu"}, table.to_string()
    assert set(table[table["status"] == "skipped"]["device"]) == {"cuda"}  # a CPU cluster: skipped, not failed
    assert list(done.loc[[1, 2], "world_size"]) == [1, 2]
    hosts = {n: json.loads((folder / done.loc[n, "run_dir"] / "summary.json").read_text())["hosts"] for n in (1, 2)}
    assert len(hosts[1]) == 1 and set(hosts[2]) == NODES, hosts  # the second cell's two ranks on the two nodes
    results = (folder / "results.md").read_text()
    header = next(line for line in results.splitlines() if line.startswith("| device "))
    assert "| slurm.nodes |" in header and results.count("| cpu ") == 2, results
    # The split per cell: every column in bench.csv, the compact split in the table.
    for key in SPLIT:
        assert done[key].notna().all(), key
    assert "| split |" in header and "| comm_bytes |" in header, header
    two = done.loc[2]
    # the split adds up to train_s (DESIGN.md), and two ranks over the network communicate
    assert math.isclose(two[["compute_s", "comm_exposed_s", "bubble_s", "overhead_s"]].sum(), two["train_s"],
                        rel_tol=0.05, abs_tol=0.01)
    assert two["comm_s"] > 0 and done.loc[1, "comm_exposed_s"] <= two["comm_exposed_s"]


# ---------------------------------------------------------------------------------------------
# A slow link: the same tiny 2-node DDP job, without and with a token bucket on node 2's link.
RATE_MBIT = 20  # node 2 sends at 20 Mbit/s: ~0.4 s per step for the mlp's ~0.95 MB of gradients
JOB = [*TINY, "model=mlp", "strategy=ddp", "strategy.backend=gloo", "dataset.num_train=256", "trainer.epochs=3",
       "trainer.warmup_epochs=1", "trainer.checkpoint_every=0", "slurm.nodes=2", "slurm.time=00:05:00"]
# What one full-size frame carries: 1500 bytes of IP, 1448 of them payload (TCP timestamps),
# 14 of Ethernet header the token bucket counts too.
WIRE = 1514 / 1448


@contextlib.contextmanager
def throttled(node: str, rate: str):
    """`local-cluster.sh throttle NODE RATE` for the block; removed however the block ends."""
    subprocess.run(["bash", str(SCRIPT), "throttle", node, rate], check=True, capture_output=True, text=True)
    try:
        yield
    finally:
        subprocess.run(["bash", str(SCRIPT), "unthrottle", node], check=True, capture_output=True)


def _run(hpml) -> tuple[pd.DataFrame, dict]:
    job = submit(hpml, *JOB)
    wait_gone(job, timeout=300)
    assert job_field(job, "JobState") == "COMPLETED", failed_log(job)
    folder = run_folder(job)
    return pd.read_csv(folder / "epochs.csv"), json.loads((folder / "summary.json").read_text())


def _per_step(epochs: pd.DataFrame, summary: dict, key: str) -> float:
    """A measured epoch's `key` over its steps (each rank's, the slowest rank's time)."""
    measured = epochs[epochs["epoch"].isin(summary["measured_epochs"])]
    steps = math.ceil(measured["samples"].iloc[0] / summary["world_size"] / summary["batch_per_rank"])
    return float(measured[key].median()) / steps


def ring_bytes_per_rank(parameters: int, world: int) -> float:
    """What each rank sends per step in a ring all-reduce of fp32 gradients: 2(n-1)/n of them."""
    return 4 * parameters * 2 * (world - 1) / world


def test_a_slowed_link_adds_the_all_reduced_bytes_over_its_rate_to_each_step(two_nodes, hpml):  # noqa: F811
    subprocess.run(["bash", str(SCRIPT), "unthrottle", "hpml-n2"], check=True, capture_output=True)  # a killed run's leftover
    base_epochs, base = _run(hpml)
    with throttled("hpml-n2", f"{RATE_MBIT}mbit"):
        slow_epochs, slow = _run(hpml)
    assert "qdisc tbf" not in subprocess.run(["tc", "-n", "hpml-n2", "qdisc", "show", "dev", "eth0"],
                                             capture_output=True, text=True).stdout
    assert set(base["hosts"]) == set(slow["hosts"]) == NODES
    expected = ring_bytes_per_rank(base["parameters"], base["world_size"]) * WIRE * 8 / (RATE_MBIT * 1e6)
    grown = _per_step(slow_epochs, slow, "train_s") - _per_step(base_epochs, base, "train_s")
    print(f"\n{base['parameters']:,} parameters, 2 ranks on 2 nodes, node 2 at {RATE_MBIT} Mbit/s: train_s per step "
          f"{_per_step(base_epochs, base, 'train_s'):.4f} s -> {_per_step(slow_epochs, slow, 'train_s'):.4f} s "
          f"(+{grown:.3f} s; bytes/rate predicts +{expected:.3f} s)")
    # The step waits for node 2's share of the all-reduce to cross the slow link: about bytes/rate
    # more (TCP's slow start after each idle compute phase and the link's other traffic add some).
    assert 0.75 * expected < grown < 1.6 * expected, (grown, expected)
    # The growth is exposed communication; compute (forward, backward, step) stays put.
    exposed = _per_step(slow_epochs, slow, "comm_exposed_s") - _per_step(base_epochs, base, "comm_exposed_s")
    assert 0.75 * expected < exposed < 1.6 * expected, (exposed, expected)
    compute = _per_step(slow_epochs, slow, "compute_s") - _per_step(base_epochs, base, "compute_s")
    assert abs(compute) < 0.2 * expected, (compute, expected)


def test_the_slow_link_benchmark_runs_in_its_tiny_form(two_nodes, tmp_path):  # noqa: F811
    from tests.test_benchmarks import run_tiny

    out = run_tiny("slow_link.py", tmp_path)
    assert "qdisc tbf" not in subprocess.run(["tc", "-n", "hpml-n2", "qdisc", "show", "dev", "eth0"],
                                             capture_output=True, text=True).stdout, out  # the link is given back
