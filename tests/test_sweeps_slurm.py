"""An Optuna sweep whose trials are SLURM jobs (the submitit launcher) on the local cluster: the
trials' objectives come back from the jobs, and a refused trial is a bad score there too."""
import json
from pathlib import Path

import pytest
import yaml
from test_slurm_cluster import SMALL, cluster  # noqa: F401  (the cluster fixture)

pytestmark = pytest.mark.slurm


def test_an_optuna_sweep_of_slurm_jobs_gets_each_trials_objective(cluster, hpml):  # noqa: F811
    base = [a for a in SMALL if not a.startswith("trainer.epochs=")]
    result = hpml("train", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=2",
                  "hydra.sweeper.n_jobs=2", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
                  "hydra.launcher.timeout_min=5", "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1",
                  *base, "trainer.epochs=choice(1,0)")
    assert result.rc == 0, result.err[-3000:]
    (folder,) = Path("runs/multirun").iterdir()
    (summary,) = [json.loads(p.read_text()) for p in folder.glob("*/summary.json")]
    (failed,) = folder.glob("*/failed.json")
    assert "trainer.epochs=0 must be positive" in json.loads(failed.read_text())["error"]
    results = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert results["best_value"] == summary["objective"]["value"] and results["best_params"] == {"trainer.epochs": 1}
