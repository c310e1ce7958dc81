"""Each user mistake through the real CLI: one `error:` line, exit code 2, nothing lost."""
import urllib.error

import pytest
from conftest import TINY, hpml_subprocess, only_run_folder
from torchvision import datasets


@pytest.mark.parametrize("args, message", [
    (["model=resnt18"], "unknown model 'resnt18' (did you mean 'resnet18'?)"),
    (["dataset=cifar"], "unknown dataset 'cifar' (did you mean 'cifar10'?)"),
    (["strategy=fsdpp"], "unknown strategy 'fsdpp' (did you mean 'fsdp'?)"),
    (["model.name=resnett"], "unknown model 'resnett' (did you mean 'resnet'?)"),
    (["dataset.batch_size=0"], "dataset.batch_size=0 must be positive"),
    (["dataset.worker_start=threads"], "dataset.worker_start=threads: use one of auto, fork, forkserver, spawn"),
    (["trainer.epochs=-2"], "trainer.epochs=-2 must be positive"),
    (["trainer.precision=fp16"], "trainer.precision=fp16 needs a CUDA GPU"),
    (["resume=nowhere"], "resume=nowhere: no checkpoint at nowhere/checkpoints/last.pt"),
    (["dataset=cifar10", "dataset.download=false", "dataset.root=empty"], "CIFAR-10 not found: put cifar-10-batches-py/"),
    (["trainer.epoch=3"], "Key 'epoch' not in 'TrainerConfig'"),
])
def test_mistake_gives_one_error_line_and_exit_2(hpml, tmp_path, args, message):
    result = hpml("train", *args)
    assert result.rc == 2
    assert result.err.strip().startswith("error: ") and message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())  # no empty run folders


@pytest.mark.parametrize("args, message", [
    ([], "hpml report: the following arguments are required: paths"),
    (["runs/x", "--bogus"], "hpml report: unrecognized arguments: --bogus"),
])
def test_report_argument_mistakes_are_one_line_too(hpml, args, message):
    result = hpml("report", *args)
    assert result.rc == 2 and result.err.strip().startswith("error: ") and message in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "usage: hpml report RUN_OR_FOLDER" in result.err


def test_offline_cifar_download_names_dataset_root(hpml, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets.CIFAR10, "download", offline)
    result = hpml("train", "dataset=cifar10", "dataset.root=cifar")
    assert result.rc == 2
    assert "CIFAR-10 could not be downloaded (URLError)" in result.err and "dataset.root" in result.err


def test_unknown_command_and_list_target(hpml):
    assert "did you mean 'train'" in hpml("trian").err
    result = hpml("list", "modles")
    assert result.rc == 2 and "did you mean 'models'" in result.err


def test_finished_run_folder_is_refused_and_kept(hpml, tmp_path, monkeypatch):
    assert hpml("train", *TINY).rc == 0
    folder = only_run_folder(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in folder.rglob("*")}
    monkeypatch.setenv("HPML_RUN_ID", folder.name)
    result = hpml("train", *TINY)
    assert result.rc == 2 and "already holds a finished run" in result.err
    assert {p.name: p.stat().st_mtime_ns for p in folder.rglob("*")} == before


def test_resume_of_a_finished_run_needs_more_epochs(hpml, tmp_path):
    assert hpml("train", *TINY).rc == 0
    folder = only_run_folder(tmp_path)
    result = hpml("train", *TINY, f"resume={folder}")
    assert result.rc == 2 and "already trained 2 epochs; set trainer.epochs above 2" in result.err


def test_corrupt_checkpoint_is_a_clear_error(hpml, tmp_path):
    folder = tmp_path / "broken"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    result = hpml("train", *TINY, f"resume={folder}")
    # The checksum check (or, without a .sha256 beside it, the load) names the damaged file.
    assert result.rc == 2 and "last.pt is damaged" in result.err and len(result.err.strip().splitlines()) == 1
    assert (folder / "checkpoints" / "last.pt").read_bytes() == b"not a checkpoint"


def test_console_script_error_has_no_traceback_unless_debug(tmp_path):
    result = hpml_subprocess(["train", "model=resnt18"], tmp_path)
    assert result.rc == 2
    assert result.err.strip() == "error: unknown model 'resnt18' (did you mean 'resnet18'?); choose one of: " + \
        result.err.strip().split("choose one of: ")[1]
    assert "Traceback" not in result.err
    debug = hpml_subprocess(["train", "model=resnt18"], tmp_path, env={"HPML_DEBUG": "1"})
    assert debug.rc == 2 and "Traceback" in debug.err
