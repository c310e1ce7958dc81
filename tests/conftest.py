"""Shared helpers: run the real CLI in-process (fast) or as a subprocess (the console script)."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from hpml_bench.cli.main import main

# The seed of the tests that draw a sample per run (test_models_any.py's torchvision builders);
# HPML_MODEL_SEED=<seed> draws the same sample again. Printed in the session's header.
MODEL_SEED = int(os.environ.get("HPML_MODEL_SEED") or random.SystemRandom().randrange(10**6))


def pytest_report_header(config):
    return f"model sample: HPML_MODEL_SEED={MODEL_SEED}"


# A run small enough for a test: ResNet-18 on 16x16 shapes, 4 steps per epoch.
TINY = ["dataset.num_train=64", "dataset.num_val=32", "dataset.image_size=16", "dataset.batch_size=16",
        "trainer.epochs=2", "trainer.progress=never"]


@dataclass
class Result:
    rc: int
    out: str
    err: str


@pytest.fixture
def hpml(tmp_path, monkeypatch, capsys):
    """hpml(*args) runs `hpml args...` in-process with tmp_path as the working directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPML_RUN_ID", raising=False)

    def run(*args: str) -> Result:
        capsys.readouterr()
        rc = main(list(args))
        captured = capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    return run


def sitecustomize_env(folder: Path, code: str) -> dict[str, str]:
    """`code` as the sitecustomize of every Python process started with the returned env (the
    launcher's workers too): how tests reach inside a real `hpml` run."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(textwrap.dedent(code))
    return {"PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def hpml_subprocess(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> Result:
    """The installed `hpml` console script, as a user runs it."""
    exe = Path(sys.executable).with_name("hpml")
    proc = subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return Result(proc.returncode, proc.stdout, proc.stderr)


def only_run_folder(root: Path) -> Path:
    folders = [p for p in (root / "runs").iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def read_run(folder: Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_csv(folder / "epochs.csv"), json.loads((folder / "summary.json").read_text())
