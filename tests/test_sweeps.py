"""Sweeps that optimize: `hpml train -m hydra/sweeper=optuna ...` with tiny CPU trials; every trial
a run folder, a failed or refused trial a bad score, `hpml report` ranking the trials; and a bench
over two recipes with a target (time-to-target columns, speedups, the metric-against-time plot)."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import TINY

# One epoch per trial (a key a sweep sets itself is left out of the shared list: a fixed value would win).
BASE = [*[a for a in TINY if not a.startswith("trainer.epochs=")], "model=mlp", "device=cpu", "trainer.checkpoint_every=0"]
TRIAL = [*BASE, "trainer.epochs=1"]
OPTUNA = ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_jobs=1"]


def _sweep(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "runs" / "multirun").iterdir()
    return folder


def _summaries(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/summary.json")}


def test_optuna_searches_lr_and_weight_decay_and_report_ranks_the_trials(hpml, tmp_path):
    result = hpml("train", *OPTUNA, "hydra.sweeper.sampler.seed=0", "hydra.sweeper.n_trials=3", *TRIAL,
                  "optimizer.lr=tag(log,interval(1e-4,1e-1))", "optimizer.weight_decay=interval(0,0.1)")
    assert result.rc == 0, result.err[-2000:]
    folder = _sweep(tmp_path)
    summaries = _summaries(folder)
    assert sorted(summaries) == ["0", "1", "2"]  # every trial is a run folder
    values = {n: s["objective"]["value"] for n, s in summaries.items()}
    assert all(s["objective"]["name"] == "best val_acc" and s["trial"] == int(n) for n, s in summaries.items())
    # the sweeper maximized (hpml set the direction from the objective) what each trial returned
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(values.values()))
    configs = {n: yaml.safe_load((folder / n / "config.yaml").read_text())["optimizer"] for n in summaries}
    assert len({c["lr"] for c in configs.values()}) == 3 and all(1e-4 <= c["lr"] <= 1e-1 for c in configs.values())
    best = max(values, key=values.get)
    assert results["best_params"]["optimizer.lr"] == pytest.approx(configs[best]["lr"])

    result = hpml("report", str(folder))
    assert result.rc == 0, result.err
    report = (folder / "report" / "report.md").read_text()
    assert "report over 3 trials" in report and "Trials ranked by their objective, best val_acc (maximize)" in report
    table = [line for line in report.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[0] == "rank" and header[-1] == "objective" and "optimizer.lr" in header
    ranked = [float(line.strip("|").split("|")[-1]) for line in table[1:]]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == 3


def test_a_refused_or_unreached_trial_is_a_bad_score_and_the_sweep_goes_on(hpml, tmp_path):
    # objective=time_to_target: the sweeper minimizes seconds; a target never reached is +inf,
    # and a trial whose config is refused (trainer.epochs=0) is +inf too, with its one line
    result = hpml("train", *OPTUNA, "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=3", *BASE,
                  "trainer.objective=time_to_target", "trainer.target.metric=val_loss",
                  "trainer.target.value=choice(100,0.0001)", "trainer.epochs=choice(1,0)")
    assert result.rc == 0, result.err[-2000:]
    errors = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert errors and all("trainer.epochs=0 must be positive; the sweep goes on, this trial scores inf" in e for e in errors)
    folder = _sweep(tmp_path)
    summaries = _summaries(folder)
    failed = sorted(folder.glob("*/failed.json"))
    assert len(summaries) + len(failed) == 3 and failed
    assert json.loads(failed[0].read_text())["exit_code"] == 2
    reached = {n: s["time_to_target_s"] for n, s in summaries.items() if s["target_reached"]}
    assert len(reached) <= 1 and all(s["target_reached"] is False for s in summaries.values() if s["target"] == "val_loss<=0.0001")
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    best = results["best_value"]
    assert (best == pytest.approx(next(iter(reached.values())))) if reached else math.isinf(best)

    result = hpml("report", str(folder))
    assert result.rc == 0, result.err
    report = (folder / "report" / "report.md").read_text()
    assert "## Failed trials" in report and "trainer.epochs=0 must be positive" in report


def test_a_direction_against_the_objective_is_refused_in_one_line(hpml, tmp_path):
    result = hpml("train", *OPTUNA, "hydra.sweeper.direction=minimize", *TRIAL, "optimizer.lr=interval(1e-4,1e-1)")
    assert result.rc == 2 and len(result.err.strip().splitlines()) == 1, result.err
    assert ("hydra.sweeper.direction=minimize, but the trials return the best monitored value (trainer.monitor), "
            "which is better higher; set hydra.sweeper.direction=maximize") in result.err
    assert not (tmp_path / "runs").exists()


def test_the_optuna_sweeper_missing_is_one_line_naming_the_extra(hpml, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "optuna" in name else real(name, *a))
    result = hpml("train", *OPTUNA, *TRIAL, "optimizer.lr=interval(1e-4,1e-1)")
    assert result.rc == 2 and result.err.strip() == ("error: hydra/sweeper=optuna needs the Optuna sweeper: "
                                                     "pip install 'hpml-bench[sweep]' (hydra-optuna-sweeper)")


def test_a_plain_sweep_goes_on_past_a_failed_job(hpml, tmp_path):
    result = hpml("train", "-m", *BASE, "trainer.epochs=0,1")
    assert result.rc == 0, result.err[-2000:]
    (line,) = [line for line in result.err.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: trial 0 (") and "trainer.epochs=0): trainer.epochs=0 must be positive; the sweep goes on" in line
    folder = _sweep(tmp_path)
    assert list(_summaries(folder)) == ["1"] and (folder / "0" / "failed.json").is_file()


BENCH = """name: recipes
description: two recipes with a target
full:
  base: [model=mlp, dataset.num_train=256, dataset.num_val=64, dataset.image_size=16, dataset.batch_size=16,
         trainer.epochs=2, trainer.checkpoint_every=0, trainer.val_every_steps=8, scheduler=constant,
         trainer.target.metric=val_loss, trainer.target.value=1.25]
  include:
    - {optimizer: adamw, optimizer.lr: 0.001}
    - {optimizer: sgd, optimizer.lr: 1.0e-9}
  env: {OMP_NUM_THREADS: '1'}
"""


@pytest.mark.slow
def test_a_bench_of_two_recipes_with_a_target(hpml, tmp_path):
    (tmp_path / "recipes.yaml").write_text(BENCH)
    result = hpml("bench", "bench=recipes.yaml", "bench.out_dir=out")
    assert result.rc == 0, result.err
    folder = tmp_path / "out"
    tidy = pd.read_csv(folder / "bench.csv")
    assert len(tidy) == 2 and (tidy["target"] == "val_loss<=1.25").all()
    for row in tidy.itertuples():  # every number is that run's own summary
        summary = json.loads((folder / row.run_dir / "summary.json").read_text())
        assert row.target_reached == summary["target_reached"]
        if summary["target_reached"]:
            assert row.time_to_target_s == pytest.approx(summary["time_to_target_s"])
            assert row.epochs_to_target == summary["epochs_to_target"]
        else:
            assert math.isnan(row.time_to_target_s) and math.isnan(row.epochs_to_target)
    fast, frozen = tidy.iloc[0], tidy.iloc[1]
    assert fast.target_reached and not frozen.target_reached  # lr 1e-9 cannot get there
    results = (folder / "results.md").read_text()
    header = next(line for line in results.splitlines() if line.startswith("| optimizer"))
    for column in ("time_to_target_s", "epochs_to_target", "ttt_speedup", "reached"):
        assert column in header
    frozen_line = next(line for line in results.splitlines() if line.startswith("| sgd"))
    assert frozen_line.count("not reached") == 2 and "| 0/1 |" in frozen_line
    fast_cells = [c.strip() for c in next(line for line in results.splitlines() if line.startswith("| adamw")).strip("|").split("|")]
    assert fast_cells[-4:] == ["1/1", f"{fast.time_to_target_s:.3f}", f"{fast.epochs_to_target:g}", "1.00"]
    assert "metric_vs_time.png" in results and (folder / "metric_vs_time.png").stat().st_size > 10_000

    result = hpml("report", "out")  # hpml report shows the same columns over the bench's runs
    assert result.rc == 0, result.err
    report = (folder / "report" / "report.md").read_text()
    assert "time_to_target_s" in report and "not reached" in report
    assert (folder / "report" / "metric_vs_time.png").is_file()
