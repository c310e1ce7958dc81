"""`hpml bench ... bench.launcher=slurm` without a cluster: stand-in sbatch/squeue/sacct on PATH
record the scripts they get and answer the states the test sets; one cell's rendered script is
run for real (with a stand-in srun) so its numbers are a real run's."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.test_bench import TINY_BASE

FAKES = {
    # records the script, answers the next job id and queues the job as PENDING
    "sbatch": """#!/bin/bash
script="${@: -1}"; n=$(( $(cat "$FAKE_SLURM/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE_SLURM/next"
mkdir -p "$FAKE_SLURM/submitted"; cp "$script" "$FAKE_SLURM/submitted/$n.sbatch"
echo "$OMP_NUM_THREADS" > "$FAKE_SLURM/submitted/$n.omp"
echo "$n|PENDING" >> "$FAKE_SLURM/squeue"; echo "$n;cluster"
""",
    "squeue": "#!/bin/bash\ncat \"$FAKE_SLURM/squeue\" 2>/dev/null\n",
    "sacct": "#!/bin/bash\ncat \"$FAKE_SLURM/sacct\" 2>/dev/null\n",
    "scontrol": "#!/bin/bash\nexit 1\n",
    # one task: drop srun's options, run the command
    "srun": "#!/bin/bash\nwhile [[ \"$1\" == --* ]]; do shift; done\nexec \"$@\"\n",
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "fakebin", tmp_path / "fakeslurm"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(state))
    return state


def _bench(tmp_path, axes: str) -> Path:
    path = tmp_path / "sl.yaml"
    path.write_text(f"name: sl\nfull:\n  base: [{', '.join([*TINY_BASE, 'strategy=ddp', 'strategy.backend=gloo'])}]\n"
                    f"  axes: {axes}\n  env: {{OMP_NUM_THREADS: '1'}}\n")
    return path


def _set(state: Path, squeue: dict[str, str], sacct: dict[str, str]) -> None:
    (state / "squeue").write_text("".join(f"{j}|{s}\n" for j, s in squeue.items()))
    (state / "sacct").write_text("".join(f"{j}|{s}\n" for j, s in sacct.items()))


def _sbatch_option(text: str, name: str) -> str:
    return re.search(rf"^#SBATCH --{name}=(\S+)$", text, re.M).group(1)


def test_cells_become_jobs_submitted_at_once_then_gathered_and_rerun(hpml, tmp_path, fake_slurm):
    bench = _bench(tmp_path, "{strategy.nproc_per_node: [1, 2], slurm.nodes: [1, 2]}")
    args = ["bench", f"bench={bench}", "bench.launcher=slurm", "slurm=local", "bench.poll_s=0.05"]
    first = hpml(*args, "bench.wait=false")
    assert first.rc == 0, first.err
    assert "4 of 4 SLURM jobs still queued" in first.out
    folder = tmp_path / "runs/bench/sl"
    jobs = json.loads((folder / "slurm_jobs.json").read_text())
    assert sorted(j["job"] for j in jobs.values()) == ["101", "102", "103", "104"]
    assert not (folder / "bench.csv").exists()
    # each cell's resources, as `hpml slurm` renders them; the form's env reaches sbatch
    by_cell = {}
    for key, job in jobs.items():
        text = (fake_slurm / "submitted" / f"{job['job']}.sbatch").read_text()
        assert text == Path(job["script"]).read_text()
        assert (fake_slurm / "submitted" / f"{job['job']}.omp").read_text().strip() == "1"
        by_cell[key.split("__rep")[0]] = (_sbatch_option(text, "nodes"), _sbatch_option(text, "ntasks-per-node"), text)
    assert {k: v[:2] for k, v in by_cell.items()} == {
        "strategy.nproc_per_node-1__slurm.nodes-1": ("1", "1"), "strategy.nproc_per_node-2__slurm.nodes-1": ("1", "2"),
        "strategy.nproc_per_node-1__slurm.nodes-2": ("2", "1"), "strategy.nproc_per_node-2__slurm.nodes-2": ("2", "2")}
    launches = [next(l for l in t.splitlines() if l.startswith("srun ")) for _, _, t in by_cell.values()]
    assert all("strategy.nproc_per_node=1 run_dir=" in l and " slurm." not in l for l in launches), launches
    assert "MASTER_ADDR=$(scontrol show hostnames" in by_cell["strategy.nproc_per_node-1__slurm.nodes-2"][2]

    # the 1x1 cell's job runs its rendered script (stand-in srun); the 2-task one fails
    one = jobs["strategy.nproc_per_node-1__slurm.nodes-1__rep0"]
    done = subprocess.run(["bash", one["script"]], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "SLURM_JOB_ID": one["job"], "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    two = jobs["strategy.nproc_per_node-2__slurm.nodes-1__rep0"]
    Path(two["log"]).write_text("Traceback (most recent call last):\nRuntimeError: the node lost its mind\n")
    wide, widest = (jobs[f"strategy.nproc_per_node-{n}__slurm.nodes-2__rep0"]["job"] for n in (1, 2))
    _set(fake_slurm, {wide: "PENDING", widest: "RUNNING"}, {one["job"]: "COMPLETED", two["job"]: "FAILED"})

    again = hpml(*args, "bench.wait=false")  # gathers nothing yet; submits nothing again
    assert again.rc == 0 and "2 of 4 SLURM jobs still queued" in again.out, again.err
    assert (fake_slurm / "next").read_text().strip() == "104"

    _set(fake_slurm, {}, {one["job"]: "COMPLETED", two["job"]: "FAILED", wide: "CANCELLED by 0", widest: "TIMEOUT"})
    gathered = hpml(*args)
    assert gathered.rc == 1, gathered.err
    table = pd.read_csv(folder / "bench.csv").set_index("cell")
    assert table.loc["strategy.nproc_per_node-1__slurm.nodes-1", "status"] == "done"
    assert table.loc["strategy.nproc_per_node-1__slurm.nodes-1", "samples_per_s"] > 0
    failed = table.loc["strategy.nproc_per_node-2__slurm.nodes-1", "reason"]
    assert f"SLURM job {two['job']} FAILED: RuntimeError: the node lost its mind; log " in failed and two["log"] in failed
    assert f"SLURM job {wide} CANCELLED" in table.loc["strategy.nproc_per_node-1__slurm.nodes-2", "reason"]
    assert f"SLURM job {widest} TIMEOUT" in table.loc["strategy.nproc_per_node-2__slurm.nodes-2", "reason"]
    results = (folder / "results.md").read_text()
    assert "## Not run" in results and "the node lost its mind" in results and (folder / "throughput_vs_devices.png").is_file()

    # a re-run submits the failed cells again, not the finished one
    rerun = hpml(*args, "bench.wait=false")
    assert rerun.rc == 0, rerun.err
    assert (fake_slurm / "next").read_text().strip() == "107"
    resubmitted = json.loads((folder / "slurm_jobs.json").read_text())
    assert resubmitted.pop("strategy.nproc_per_node-1__slurm.nodes-1__rep0")["job"] == one["job"]
    assert sorted(j["job"] for j in resubmitted.values()) == ["105", "106", "107"]


@pytest.mark.parametrize("extra, message", [
    (["bench.launcher=cloud"], "unknown bench.launcher 'cloud'"),
    (["slurm=local"], "slurm=/slurm.* settings need bench.launcher=slurm"),
    (["bench.launcher=slurm", "slurm=cluster", "slurm.gpus_per_node=1"],
     "bench cell strategy.nproc_per_node-2 asks for 2 GPUs per node; slurm=cluster gives 1"),
    (["bench.launcher=slurm", "slurm=local", "slurm.cpus_per_task=0", "dataset.num_workers=1"],
     "bench cell strategy.nproc_per_node-1: slurm.cpus_per_task=0 is below"),
])
def test_bench_slurm_preflight_errors_are_one_line(hpml, tmp_path, fake_slurm, extra, message):
    result = hpml("bench", f"bench={_bench(tmp_path, '{strategy.nproc_per_node: [1, 2]}')}", *extra)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (fake_slurm / "submitted").exists()  # nothing submitted


def test_bench_slurm_without_sbatch_is_refused(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = hpml("bench", f"bench={_bench(tmp_path, '{strategy.nproc_per_node: [1]}')}", "bench.launcher=slurm")
    assert result.rc == 2 and "bench.launcher=slurm but sbatch is not on PATH" in result.err
