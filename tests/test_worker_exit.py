"""How a process that made a process group ends: its exit handlers run, then os._exit, without
Python's finalization, in which a gloo thread still holding a finished collective's tensors
aborted the process (exit -6 after a finished run: strategies/distributed.py). A process
without a group ends as Python ends any."""
from __future__ import annotations


import pytest

from tests.conftest import hpml_subprocess, sitecustomize_env

BASE = ["model=mlp", "dataset=synthetic", "dataset.image_size=8", "dataset.num_classes=4", "dataset.num_train=64",
        "dataset.num_val=32", "dataset.batch_size=16", "trainer.epochs=1", "trainer.progress=never"]

# Each process leaves a mark from an exit handler and one from an object that only Python's
# finalization (clearing this module) deletes; its __del__ holds what it needs in its defaults,
# as the module's globals are gone by then.
MARKS = """
import atexit, os
name = os.environ.get("RANK", "main")
marks = os.environ["HPML_TEST_MARKS"]

def mark(what):
    with open(os.path.join(marks, f"{what}-{name}"), "w") as f:
        f.write("")

atexit.register(mark, "exit-handlers")

class Finalized:
    def __del__(self, fd=os.open(os.path.join(marks, f"finalized-{name}"), os.O_WRONLY | os.O_CREAT),
                write=os.write):
        write(fd, b"finalized")

finalized = Finalized()
"""


@pytest.fixture
def marks(tmp_path):
    (tmp_path / "marks").mkdir()
    return {**sitecustomize_env(tmp_path / "inject", MARKS), "HPML_TEST_MARKS": str(tmp_path / "marks"),
            "WANDB_MODE": "offline"}


def seen(tmp_path) -> set[str]:
    """The marks left (a finalized-* file exists from the start: it counts once written)."""
    return {p.name for p in (tmp_path / "marks").iterdir() if p.stat().st_size or not p.name.startswith("finalized")}


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_workers_run_their_exit_handlers_and_skip_finalization(tmp_path, marks, strategy):
    r = hpml_subprocess(["train", *BASE, f"strategy={strategy}", "strategy.nproc_per_node=2", "run_dir=two"],
                        tmp_path, env=marks)
    assert r.rc == 0, r.err
    assert (tmp_path / "two" / "summary.json").exists()
    # the workers: exit handlers, no finalization; the launcher made no group: both
    assert seen(tmp_path) == {"exit-handlers-0", "exit-handlers-1", "exit-handlers-main", "finalized-main"}


def test_a_process_without_a_group_ends_as_python_ends(tmp_path, marks):
    r = hpml_subprocess(["train", *BASE, "run_dir=one"], tmp_path, env=marks)
    assert r.rc == 0, r.err
    assert seen(tmp_path) == {"exit-handlers-main", "finalized-main"}
