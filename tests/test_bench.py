"""hpml bench and hpml report: the matrix, ABBA order, skips, failures, re-runs, the tables, the errors."""
import json

import pandas as pd
import pytest

from hpml_bench.bench.config import BenchScale, expand_cells
from hpml_bench.bench.runner import Cell, abba_order

TINY_BASE = ["model=mlp", "dataset=synthetic", "dataset.num_train=32", "dataset.num_val=8", "dataset.image_size=8",
             "trainer.epochs=2", "trainer.checkpoint_every=0"]


def _bench_file(tmp_path, axes: str, extra: str = "", repeats: int = 1):
    path = tmp_path / "tiny.yaml"
    path.write_text(f"name: tiny\nfull:\n  base: [{', '.join(TINY_BASE)}]\n  axes: {axes}\n  repeats: {repeats}\n"
                    f"  env: {{OMP_NUM_THREADS: '1'}}\n{extra}")
    return path


def test_matrix_is_the_product_minus_excludes_plus_includes():
    form = BenchScale(axes={"model": ["a", "b"], "dataset.batch_size": [8, 16]},
                      exclude=[{"model": "b", "dataset.batch_size": 16}], include=[{"strategy": "dp"}])
    cells = expand_cells(form)
    assert cells == [{"model": "a", "dataset.batch_size": 8}, {"model": "a", "dataset.batch_size": 16},
                     {"model": "b", "dataset.batch_size": 8}, {"strategy": "dp"}]


def test_repeats_alternate_abba():
    a, b = Cell({"x": 1}, []), Cell({"x": 2}, [])
    skipped = Cell({"x": 3}, [], status="skipped")
    order = [(c.values["x"], r) for c, r in abba_order([a, b, skipped], 4)]
    assert order == [(1, 0), (2, 0), (2, 1), (1, 1), (1, 2), (2, 2), (2, 3), (1, 3)]


@pytest.mark.parametrize("args, message", [
    (["bench=nope"], "unknown bench 'nope'"),
    ([], "name a bench: hpml bench bench=<name>"),
    (["bench=iformer_strategies", "bench.scale=huge"], "bench.scale=huge: use full or smoke"),
])
def test_bench_errors_are_one_line(hpml, args, message):
    result = hpml("bench", *args)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1


def test_axis_naming_an_unknown_train_key_is_refused_before_any_run(hpml, tmp_path):
    path = _bench_file(tmp_path, "{trainer.epoch: [1, 2]}")
    result = hpml("bench", f"bench={path}")
    assert result.rc == 2 and "bench axis 'trainer.epoch' is not a key of the train config" in result.err
    assert not (tmp_path / "runs").exists()


def test_empty_matrix_after_excludes_is_refused(hpml, tmp_path):
    path = _bench_file(tmp_path, "{dataset.batch_size: [8]}", "  exclude:\n    - {dataset.batch_size: 8}\n")
    result = hpml("bench", f"bench={path}")
    assert result.rc == 2 and "the bench matrix is empty after its excludes" in result.err


def test_report_without_runs_is_refused(hpml, tmp_path):
    (tmp_path / "empty").mkdir()
    result = hpml("report", "empty")
    assert result.rc == 2 and "no finished runs (summary.json) under empty" in result.err


@pytest.mark.slow
def test_bench_runs_cells_skips_records_failures_resumes_and_reports(hpml, tmp_path):
    path = _bench_file(tmp_path, "{dataset.batch_size: [8, 16]}",
                       "  include:\n    - {model.weights: /nonexistent/w.pt}\n    - {trainer.precision: fp16}\n"
                       "  baseline: {dataset.batch_size: 8}\n", repeats=2)
    result = hpml("bench", f"bench={path}", "bench.out_dir=out")
    assert result.rc == 1, result.err  # one cell failed: the exit code says so
    folder = tmp_path / "out"
    tidy = pd.read_csv(folder / "bench.csv")
    done = tidy[tidy.status == "done"]
    assert sorted(done["dataset.batch_size"].astype(int)) == [8, 8, 16, 16]
    # ABBA: the second repeat ran the cells in reverse order
    order = tidy.dropna(subset=["order"]).sort_values("order")
    assert list(order["cell"]) == ["dataset.batch_size-8", "dataset.batch_size-16", "model.weights--nonexistent-w.pt"] * 1 + \
        ["model.weights--nonexistent-w.pt", "dataset.batch_size-16", "dataset.batch_size-8"]
    failed = tidy[tidy.status == "failed"]
    assert len(failed) == 2 and failed["reason"].str.contains("model.weights=/nonexistent/w.pt: no such file").all()
    (skipped,) = tidy[tidy.status == "skipped"].itertuples()
    assert "trainer.precision=fp16 needs CUDA" in skipped.reason
    # every number comes from that run's own summary.json
    for row in done.itertuples():
        summary = json.loads((folder / row.run_dir / "summary.json").read_text())
        assert row.run_s == pytest.approx(summary["median_run_s"])
    results = (folder / "results.md").read_text()
    assert "**(baseline)**" in results and "## Not run" in results and "fp16 needs CUDA" in results
    for png in ("throughput_vs_devices.png", "epoch_time.png", "speedup.png"):
        assert (folder / png).stat().st_size > 10_000
    first_mtimes = {p: p.stat().st_mtime for p in folder.glob("cells/*/rep*/summary.json")}

    # a second run reuses the finished cells and retries only the failed one
    result = hpml("bench", f"bench={path}", "bench.out_dir=out")
    assert result.rc == 1
    assert result.out.count("finished earlier, reused") == 4
    assert {p: p.stat().st_mtime for p in folder.glob("cells/*/rep*/summary.json")} == first_mtimes

    # hpml report over the bench folder: the differing key is the column, repeats are medians
    result = hpml("report", "out")
    assert result.rc == 0, result.err
    report = (folder / "report" / "report.md").read_text()
    header = report.split("\n| ", 1)[1].splitlines()[0]
    assert "dataset.batch_size" in header and "speedup" in header and "repeats" in header
    rows = pd.read_csv(folder / "report" / "report.csv")
    assert len(rows) == 4


@pytest.mark.slow
def test_a_bench_cells_mfu_is_its_achieved_tflops_over_the_peak_it_used(hpml, tmp_path):
    path = _bench_file(tmp_path, "{trainer.peak_tflops: [0.001, 0.004]}")
    result = hpml("bench", f"bench={path}", "bench.out_dir=out")
    assert result.rc == 0, result.err
    folder = tmp_path / "out"
    tidy = pd.read_csv(folder / "bench.csv")
    assert len(tidy) == 2 and tidy["flops_per_sample"].nunique() == 1 and (tidy["flops_per_sample"] > 0).all()
    for _, row in tidy.iterrows():
        assert row["peak_tflops"] == float(row["trainer.peak_tflops"])  # the peak the cell's run used
        assert row["mfu"] == pytest.approx(row["tflops"] / row["peak_tflops"], rel=1e-9)
    assert set(tidy["peak_tflops"]) == {0.001, 0.004}
    results = (folder / "results.md").read_text()
    header = results.split("\n| ", 1)[1].splitlines()[0]
    assert "tflops" in header and "mfu" in header and "![MFU](mfu.png)" in results
    assert (folder / "mfu.png").stat().st_size > 10_000


@pytest.mark.slow
def test_report_reads_a_multirun_sweep_with_a_baseline(hpml, tmp_path):
    from conftest import TINY

    result = hpml("train", "-m", *TINY, "model=mlp", "trainer.checkpoint_every=0", "dataset.batch_size=8,16")
    assert result.rc == 0, result.err
    (sweep,) = (tmp_path / "runs" / "multirun").iterdir()
    result = hpml("report", str(sweep), "--baseline", str(sweep / "1"), "--out", "rep")
    assert result.rc == 0, result.err
    table = (tmp_path / "rep" / "report.md").read_text()
    lines = [l for l in table.splitlines() if l.startswith("| ")]
    assert lines[0].startswith("| rank | dataset.batch_size |")  # a sweep's trials, ranked by their objective
    base = next(l for l in lines if "(baseline)" in l)
    assert "| 16 **(baseline)** |" in base and "| 1.00 |" in base
    rows = pd.read_csv(tmp_path / "rep" / "report.csv")
    summaries = {int(p.parent.name): json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert sorted(rows["samples_per_s"]) == pytest.approx(sorted(s["median_samples_per_s"] for s in summaries.values()))


@pytest.mark.parametrize("preset, model, dataset, image_size", [
    ("hct_ddp", "hct", "csv_images", 512),
    ("iformer_strategies", "iformer", "image_folder", 224),
    ("segmentation_scaling", "unet", "lgg_mri", 256),
])
def test_experiment_presets_carry_the_seed_recipe(preset, model, dataset, image_size):
    from hpml_bench.train.config import compose_train

    cfg = compose_train([f"experiment={preset}"])
    assert (cfg.model.name, cfg.dataset.name, cfg.dataset.image_size) == (model, dataset, image_size)
    # a command-line choice still wins over the preset's (the bench's include cells rely on it)
    assert compose_train([f"experiment={preset}", "strategy=single"]).strategy.name == "single"


def test_every_bench_config_composes_in_both_forms():
    from hpml_bench.bench.config import expand_cells, load_bench
    from hpml_bench.config.groups import choices

    for name in choices("bench"):
        for scale in ("full", "smoke"):
            bench, _ = load_bench([f"bench={name}", f"bench.scale={scale}"])
            assert bench.name == name and expand_cells(bench.form)
