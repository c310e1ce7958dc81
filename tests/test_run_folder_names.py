"""One folder per run: `hpml train` without run_dir= or HPML_RUN_ID never shares or refuses a
folder because another run started in the same second; a named folder keeps its meaning."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpml_bench.runfolder import layout
from tests.conftest import TINY

RUN = [*TINY, "model=mlp", "trainer.epochs=1"]
SECOND = datetime.datetime(2026, 12, 5, 8, 2, 21)


def test_runs_started_in_one_second_each_get_a_folder(hpml, tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "_now", lambda: SECOND)  # every start in the same second
    for _ in range(3):
        r = hpml("train", *RUN)
        assert r.rc == 0, r.err
    names = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert names == ["2026-12-05_08-02-21", "2026-12-05_08-02-21-2", "2026-12-05_08-02-21-3"]
    assert all((tmp_path / "runs" / n / "summary.json").is_file() for n in names)
    assert "run folder: " in r.out and r.out.rstrip().endswith("runs/2026-12-05_08-02-21-3")


def test_a_refused_start_leaves_no_folder_and_takes_no_name(hpml, tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "_now", lambda: SECOND)
    r = hpml("train", *RUN, "strategy=ddp", "strategy.nproc_per_node=0")  # refused by the strategy
    assert r.rc == 2 and r.err.startswith("error: "), r.err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert hpml("train", *RUN).rc == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["2026-12-05_08-02-21"]


def test_a_named_folder_keeps_its_meaning(hpml, tmp_path, monkeypatch):
    assert hpml("train", *RUN, "run_dir=runs/mine").rc == 0
    again = hpml("train", *RUN, "run_dir=runs/mine")
    assert again.rc == 2 and "already holds a finished run" in again.err
    monkeypatch.setenv("HPML_RUN_ID", "job-7")
    assert hpml("train", *RUN).rc == 0
    again = hpml("train", *RUN)
    assert again.rc == 2 and "runs/job-7 already holds a finished run" in again.err
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["job-7", "mine"]


@pytest.mark.slow  # three processes at once
def test_three_trains_started_together_all_run(tmp_path):
    # A shell loop's `hpml train &` x3: started together, they used to name the same second's
    # folder, and two were refused as "in use by a live hpml train".
    exe = Path(sys.executable).with_name("hpml")
    procs = [subprocess.Popen([str(exe), "train", *RUN], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(3)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 3, folders
    assert all(json.loads((f / "summary.json").read_text())["model"] == "mlp" for f in folders)


def test_no_room_for_a_run_folder_is_one_line(hpml, tmp_path):
    (tmp_path / "runs").write_text("a file where the runs go")
    r = hpml("train", *RUN)
    assert r.rc == 2 and r.err.strip() == "error: cannot make a run folder in runs: File exists; set run_dir= to another folder"


def test_an_empty_name_is_no_name(hpml, tmp_path, monkeypatch):
    r = hpml("train", *RUN, "run_dir=")
    assert r.rc == 2 and "run_dir= is empty" in r.err and not any(tmp_path.iterdir())
    monkeypatch.setenv("HPML_RUN_ID", "")  # e.g. HPML_RUN_ID=$SLURM_JOB_ID outside a job
    monkeypatch.setattr(layout, "_now", lambda: SECOND)
    assert hpml("train", *RUN).rc == 0
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["2026-12-05_08-02-21"]
