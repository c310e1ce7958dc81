"""The seed recipes' cluster axes (conf/bench/*.yaml `cluster:`): what bench.launcher=slurm adds
to a form (seed 003's nodes, DataParallel's GPUs), checked on the composed benches and, with
stand-in SLURM tools, on the jobs they submit; a local bench never sees them."""
from __future__ import annotations

import json
import re
from pathlib import Path

from hpml_bench.bench.config import expand_cells, load_bench
from hpml_bench.config.groups import choices
from tests.test_bench_slurm import fake_slurm  # noqa: F401 (the fixture)

RETINOPATHY = ["bench=retinopathy_cpu_gpu", "bench.scale=smoke"]


def _cells(*args: str) -> list[dict]:
    bench, _ = load_bench(list(args))
    return expand_cells(bench.form)


def test_every_bench_composes_on_a_cluster_and_only_there_gains_slurm_axes():
    for name in choices("bench"):
        for scale in ("full", "smoke"):
            local = _cells(f"bench={name}", f"bench.scale={scale}")
            cluster = _cells(f"bench={name}", f"bench.scale={scale}", "bench.launcher=slurm")
            assert cluster and not any(k.startswith("slurm.") for cell in local for k in cell), (name, scale)


def test_seed_003_varies_the_nodes_on_a_cluster():
    bench, _ = load_bench(["bench=retinopathy_cpu_gpu", "bench.launcher=slurm"])
    assert "strategy=ddp" in bench.form.base  # one rank per node, as the seed's Lightning DDP
    cells = expand_cells(bench.form)
    assert sorted({c["slurm.nodes"] for c in cells}) == [1, 2, 8] and len(cells) == 2 * 2 * 3
    smoke = _cells(*RETINOPATHY, "bench.launcher=slurm")
    assert [(c["device"], c["dataset.num_workers"], c["slurm.nodes"]) for c in smoke] == [
        ("cpu", 0, 1), ("cpu", 0, 2), ("cuda", 0, 1), ("cuda", 0, 2)]


def test_seed_001s_dataparallel_cell_asks_its_job_for_the_nodes_gpus():
    dp = [c for c in _cells("bench=iformer_strategies", "bench.launcher=slurm") if c["strategy"] == "dp"]
    assert dp == [{"strategy": "dp", "slurm.gpus_per_node": 4}]


def _option(text: str, name: str) -> str:
    return re.search(rf"^#SBATCH --{name}=(\S+)$", text, re.M).group(1)


def test_the_node_axis_becomes_jobs_and_cuda_cells_wait_for_a_preset_with_gpus(hpml, tmp_path, fake_slurm):  # noqa: F811
    result = hpml("bench", *RETINOPATHY, "bench.launcher=slurm", "slurm=local", "bench.wait=false")
    assert result.rc == 0, result.err
    folder = tmp_path / "runs/bench/retinopathy_cpu_gpu-smoke"
    jobs = json.loads((folder / "slurm_jobs.json").read_text())
    scripts = {key.split("__rep")[0]: Path(job["script"]).read_text() for key, job in jobs.items()}
    assert {cell: _option(text, "nodes") for cell, text in scripts.items()} == {
        "device-cpu__dataset.num_workers-0__slurm.nodes-1": "1", "device-cpu__dataset.num_workers-0__slurm.nodes-2": "2"}
    assert all(" strategy=ddp " in text and _option(text, "ntasks-per-node") == "1" for text in scripts.values())
    # the cuda cells: skipped with the reason, not submitted to fail on a CPU cluster
    out = " ".join(result.out.split())  # the console wraps long lines
    assert out.count("needs CUDA; slurm=local gives its jobs no GPU (set slurm.gpus_per_node)") == 2, result.out

    gpus = hpml("bench", *RETINOPATHY, "bench.launcher=slurm", "slurm=cluster", "bench.wait=false",
                "bench.out_dir=gpu")
    assert gpus.rc == 0, gpus.err
    jobs = json.loads((tmp_path / "gpu/slurm_jobs.json").read_text())
    cuda = [job for key, job in jobs.items() if key.startswith("device-cuda")]
    assert len(jobs) == 4 and all(_option(Path(j["script"]).read_text(), "gres") == "gpu:1" for j in cuda)


def test_a_local_bench_ignores_the_cluster_section():
    bench, _ = load_bench(RETINOPATHY)
    assert "strategy=ddp" not in bench.form.base and bench.form.axes["dataset.num_workers"] == [0, 1]
