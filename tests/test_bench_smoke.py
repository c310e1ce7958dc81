"""The five seed benches in their smoke form (tiny models, generated data, CPU, 1-2 ranks).

Each cell is a real `hpml train` process, so these are the slowest tests; they are kept in
this one file. The full forms differ only in their base overrides and axes."""
import pandas as pd
import pytest

# bench -> (cells that run, cells skipped on a machine without CUDA)
SMOKE = {
    "hct_ddp": (2, 0),
    "iformer_strategies": (3, 1),  # dp needs 2 GPUs
    "resnet_allreduce": (3, 0),
    "retinopathy_cpu_gpu": (2, 2),  # the device=cuda cells
    "segmentation_scaling": (3, 0),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SMOKE))
def test_smoke_bench_runs_on_cpu(hpml, tmp_path, name):
    import torch

    result = hpml("bench", f"bench={name}", "bench.scale=smoke", "bench.out_dir=out")
    assert result.rc == 0, result.out[-3000:] + result.err
    folder = tmp_path / "out"
    tidy = pd.read_csv(folder / "bench.csv")
    runs, skipped = SMOKE[name]
    assert (tidy.status == "done").sum() == runs
    if not torch.cuda.is_available():
        assert (tidy.status == "skipped").sum() == skipped
        assert all("CUDA" in str(reason) for reason in tidy[tidy.status == "skipped"]["reason"])
    assert (tidy.status == "failed").sum() == 0
    done = tidy[tidy.status == "done"]
    assert (done.samples_per_s > 0).all() and (done.run_s >= done.train_s).all()
    results = (folder / "results.md").read_text()
    baseline_line = next(l for l in results.splitlines() if "**(baseline)**" in l)
    assert "| 1.00 |" in baseline_line  # the baseline's own speedup
    assert len([l for l in results.splitlines() if l.startswith("| ")]) == runs + 1  # header + one row per cell
    for png in ("throughput_vs_devices.png", "epoch_time.png", "speedup.png"):
        assert (folder / png).stat().st_size > 10_000
    assert f"{name} (smoke)" in result.out and "bench folder:" in result.out  # the table printed at the end
    if name == "hct_ddp":  # the seed profiled its DDP run: every rank of every cell has a trace
        for run_dir in done.run_dir:
            ranks = 2 if "nproc_per_node-2" in run_dir else 1
            assert len(list((folder / run_dir / "traces").glob("rank*.pt.trace.json.gz"))) == ranks
