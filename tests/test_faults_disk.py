"""Fault: a full or read-only file system, for real: small tmpfs mounts (root; skipped otherwise)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.test_faults_nonfinite import error_line
from tests.test_preempt import assert_bitwise_equal, load

# MLP + Adam: last.pt ~2.9 MB, best.pt ~1 MB. A 5 MB disk holds epoch 1's pair, not epoch 2's temp file too.
RUN = [*TINY, "model=mlp", "trainer.epochs=3"]


@pytest.fixture
def tmpfs(tmp_path):
    mounts = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], check=False)


@pytest.mark.slow  # several runs, a real second process or a bitwise resume
def test_full_disk_stops_cleanly_and_resumes_to_the_same_result(hpml, tmp_path, tmpfs):
    tmpfs("small", "size=5m")
    r = hpml("train", *RUN, "run_dir=small/run")
    assert r.rc == 4, r.err
    line = error_line(r.err)
    assert "cannot write " in line and "small/run/checkpoints/last.pt" in line and "MiB free there" in line, line
    assert line.endswith("then resume with: hpml train resume=small/run"), line
    left = sorted(p.name for p in (tmp_path / "small/run/checkpoints").iterdir())
    assert left == [".hpml.write.lock", "best.pt", "best.pt.sha256", "last.pt", "last.pt.sha256"], left  # no temp file left to fill the disk
    assert load(tmp_path / "small/run/checkpoints/last.pt")["epoch"] == 1  # the previous file, intact
    # Moved where there is room, it resumes to what an uninterrupted run gives.
    shutil.copytree(tmp_path / "small/run", tmp_path / "moved")
    assert hpml("train", "resume=moved").rc == 0
    assert hpml("train", *RUN, "run_dir=full").rc == 0
    assert_bitwise_equal(load(tmp_path / "full/checkpoints/last.pt")["model"], load(tmp_path / "moved/checkpoints/last.pt")["model"])


def test_warn_trains_on_and_tries_each_checkpoint_again(hpml, tmp_path, tmpfs):
    tmpfs("small", "size=5m")
    r = hpml("train", *RUN, "trainer.on_write_error=warn", "run_dir=small/run")
    assert r.rc == 0, r.err
    warnings = [line for line in r.err.splitlines() if line.startswith("warning: cannot write")]
    assert len(warnings) == 2, r.err  # epochs 2 and 3 each tried
    assert (tmp_path / "small/run/summary.json").is_file()
    assert load(tmp_path / "small/run/checkpoints/last.pt")["epoch"] == 1


def test_read_only_run_folder_is_refused_before_loading_data(hpml, tmp_path, tmpfs):
    tmpfs("ro", "size=1m,ro")
    r = hpml("train", "model=mlp", "dataset=cifar10", "dataset.root=nowhere", "run_dir=ro/run")
    assert r.rc == 4
    assert "cannot write ro/run: Read-only file system" in error_line(r.err)  # not the missing data set


def test_full_disk_in_export_is_one_line(hpml, tmp_path, tmpfs):
    assert hpml("train", *RUN, "trainer.epochs=1", "run_dir=run").rc == 0
    small = tmpfs("small", "size=64k")
    (tmp_path / "run/export").symlink_to(small)
    r = hpml("export", "run=run", "format=torchscript")
    assert r.rc == 4, r.err
    assert "cannot write " in error_line(r.err) and "MiB free there; free space" in r.err
    assert not any(small.rglob("*.tmp"))
