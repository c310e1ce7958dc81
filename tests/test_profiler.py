"""profiler=torch: bounded traces per rank with the step's named ranges; the memory snapshot's refusal on CPU."""
import gzip
import json

import pytest
from conftest import TINY, only_run_folder

from hpml_bench.callbacks.profiler import DATA_WAIT_RANGE

PROFILED = [*TINY, "model=mlp", "profiler=torch", "profiler.skip_first=1", "profiler.wait=1", "profiler.warmup=1",
            "profiler.active=2"]


def _trace_names(path) -> set[str]:
    with gzip.open(path, "rt") as f:
        trace = json.load(f)
    return {event.get("name") for event in trace["traceEvents"]}


def test_profiler_writes_one_bounded_trace_with_named_step_ranges(hpml, tmp_path):
    result = hpml("train", *PROFILED)
    assert result.rc == 0, result.err
    traces = only_run_folder(tmp_path) / "traces"
    files = sorted(traces.glob("rank0.*.pt.trace.json.gz"))
    assert len(files) == 1  # repeat=1: one window, not one per step
    names = _trace_names(files[0])
    assert {DATA_WAIT_RANGE, "forward", "backward", "optimizer_step"} <= names
    # 2 active steps were recorded, not the run's 8
    assert sum(1 for n in names if n and n.startswith("ProfilerStep#")) == 2
    table = (traces / "rank0_top_ops.txt").read_text()
    assert "Self CPU" in table and "aten::" in table


def test_profiler_ranges_cost_nothing_when_off(hpml, tmp_path):
    from hpml_bench.strategies.base import Strategy, StrategyConfig, no_range
    from hpml_bench.strategies.step import StepSettings

    strategy = Strategy(StrategyConfig(), StepSettings())
    assert strategy.range is no_range
    assert strategy.range("forward") is strategy.range("backward")  # one shared null context, no allocation
    import torch

    traced = Strategy(StrategyConfig(), StepSettings(named_ranges=True))  # profiler=torch
    assert traced.range is torch.profiler.record_function


@pytest.mark.dist
def test_ddp_ranks_each_write_a_trace_with_the_communication_range(hpml, tmp_path):
    result = hpml("train", *PROFILED, "strategy=ddp", "strategy.nproc_per_node=2", "strategy.comm_hook=fp16")
    assert result.rc == 0, result.err
    traces = only_run_folder(tmp_path) / "traces"
    for rank in (0, 1):
        (trace,) = traces.glob(f"rank{rank}.*.pt.trace.json.gz")
        names = _trace_names(trace)
        assert {"backward+allreduce", "allreduce_fp16", "forward", "optimizer_step"} <= names
        assert (traces / f"rank{rank}_top_ops.txt").is_file()


def test_memory_snapshot_is_refused_on_cpu(hpml, tmp_path):
    result = hpml("train", *TINY, "profiler=torch", "profiler.memory_snapshot=true", "device=cpu")
    assert result.rc == 2
    assert result.err.strip().splitlines() == [result.err.strip()]
    assert "profiler.memory_snapshot=true needs a CUDA GPU" in result.err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_tb_profiler_plugin_counts_the_data_wait_as_dataloader_time(hpml, tmp_path, monkeypatch):
    """The plugin's own parser over the trace of a run whose loader sleeps 50 ms per batch:
    its overview shows that DataLoader time per step, not 0 us."""
    plugin = pytest.importorskip("torch_tb_profiler.profiler.data")
    import time

    from hpml_bench.data.synthetic import RandomTensors

    slow_get = RandomTensors.__getitem__

    def slow(self, i):
        if i % 16 == 0:  # once per batch of 16
            time.sleep(0.05)
        return slow_get(self, i)

    monkeypatch.setattr(RandomTensors, "__getitem__", slow)
    # synthetic_on=host: the data set on the host, through the DataLoader (made on the device it has no loader)
    result = hpml("train", *PROFILED, "dataset=synthetic", "dataset.synthetic_on=host", "dataset.num_workers=0")
    assert result.rc == 0, result.err
    (trace,) = (only_run_folder(tmp_path) / "traces").glob("rank0.*.pt.trace.json.gz")
    with gzip.open(trace, "rt") as f:
        data = plugin.RunProfileData.from_json("rank0", "1", json.load(f))
    data.process()
    from torch_tb_profiler.profiler.event_parser import ProfileRole

    costs = data.avg_costs.costs
    assert costs[ProfileRole.DataLoader] > 40_000  # us per step: the 50 ms sleep, seen by the plugin
