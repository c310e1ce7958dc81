"""The scripts in benchmarks/ (the sources of docs/results.md's numbers) cannot break unseen:
each has a tiny form, run here for real (the numbers do not matter, that they come does).
And `run_training` makes its own run folder, as benchmarks/data_path.py relies on."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY

from hpml_bench.train.config import compose_train
from hpml_bench.train.run import run_training

ROOT = Path(__file__).resolve().parents[1]
# script -> (its tiny command line after the script, a line its output must hold). gpu_rows.py
# is gpu.sh's helper: gpu.sh --tiny runs both its forms (jpegs, table).
TINY_FORMS = {
    "data_path.py": (["--tiny"], "median, 0 workers: decode"),
    "finite_check.py": (["--tiny"], "2 alternated blocks of 2 steps"),
    "inference.py": (["--tiny"], "| resnet18 | 32² | 1 | onnx (Python) |"),
    "loop_overhead.py": (["--tiny"], "| plain | "),
    "loop_overhead.py inprocess": (["--tiny", "--form", "inprocess"], "| hpml | "),
    "outside_models_export.py": (["--tiny", "{tmp}"], "| timm test_vit | ok ("),
    "startup.py": (["--tiny"], "medians over 1 rounds"),
    "strategies.py": (["--tiny"], "| pipe gpipe | 2 | "),
    "gpu.sh": (["--tiny"], "| DDP world size 1 / single (NCCL) | >= 0.97 | "),
    "gpu_rows.py": None,
    "slurm_requeue.py": (["--tiny"], "requeue -> resumed (checkpoint loaded, first step next): "),
    "augment_cost.py": (["--tiny"], "| all (rrc,hflip,randaug,erasing,mixup,cutmix) | "),
    "digits_recipe.py": (["--tiny"], "| recipe | "),
    "oom_agreement.py": (["--tiny"], "window "),
    "step_split.py": (["--tiny"], "| pipe 1f1b (m=4) | "),
    "slow_link.py": (["--tiny"], "train_s grew "),
}
NEEDS_CLUSTER = {"slurm_requeue.py"}
# slow_link.py throttles node 2 of the 2-node cluster: run by tests/test_cluster_split.py
NEEDS_TWO_NODES = {"slow_link.py"}


def test_every_benchmark_script_has_a_tiny_form():
    scripts = {p.name for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".py", ".sh")}
    assert scripts == {name.split()[0] for name in TINY_FORMS}


def test_run_training_makes_its_own_run_folder(tmp_path):
    """A script's call (no Hydra to make the folder first) trains in one process on one host."""
    folder = tmp_path / "not" / "made"
    with contextlib.redirect_stdout(io.StringIO()):
        records = run_training(compose_train([*TINY, "model=mlp", "trainer.epochs=1", f"run_dir={folder}"]), folder)
    assert len(records) == 1 and (folder / "summary.json").is_file()


def run_tiny(name: str, tmp_path: Path) -> str:
    args, expected = TINY_FORMS[name]
    script = ROOT / "benchmarks" / name.split()[0]
    command = ["bash" if script.suffix == ".sh" else sys.executable, str(script), *(a.format(tmp=tmp_path) for a in args)]
    # One thread each: the tiny forms check that the scripts run, not their numbers.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), "HPML_RUN_ID": ""}
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert expected in proc.stdout, proc.stdout[-3000:]
    assert "failed" not in proc.stdout.lower(), proc.stdout[-3000:]
    return proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, form in TINY_FORMS.items()
                                        if form and n not in NEEDS_CLUSTER | NEEDS_TWO_NODES))
def test_benchmark_runs_in_its_tiny_form(name, tmp_path):
    run_tiny(name, tmp_path)


@pytest.mark.slurm
@pytest.mark.parametrize("name", sorted(NEEDS_CLUSTER))
def test_cluster_benchmark_runs_in_its_tiny_form(name, tmp_path, cluster):
    run_tiny(name, tmp_path)


@pytest.fixture
def cluster():
    """The local SLURM cluster, started where root can start it, else a loud skip (as in
    tests/test_slurm_cluster.py)."""
    import shutil

    def up() -> bool:
        if shutil.which("sinfo") is None:
            return False
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
        return done.returncode == 0 and any(state in done.stdout for state in ("idle", "mix", "alloc"))

    if not up() and os.geteuid() == 0:
        subprocess.run(["bash", str(ROOT / "scripts/slurm/local-cluster.sh"), "up"], timeout=600)
    if not up():
        pytest.skip("NO SLURM CLUSTER: `sudo scripts/slurm/local-cluster.sh up` could not start one here; "
                    "the SLURM tests did NOT run")
