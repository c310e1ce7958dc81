"""End-to-end `hpml train` runs on tiny settings: table, run folder, checkpoints, resume."""
import json

import pytest
import torch
from conftest import TINY, only_run_folder, read_run


def test_tiny_run_writes_table_csv_summary_and_checkpoints(hpml, tmp_path):
    result = hpml("train", *TINY, "trainer.epochs=3")
    assert result.rc == 0, result.err
    assert "epoch 3/3" in result.out and "run folder:" in result.out
    for column in ("data_s", "train_s", "run_s", "val_s"):
        assert column in result.out
    folder = only_run_folder(tmp_path)
    epochs, summary = read_run(folder)
    assert list(epochs["epoch"]) == [1, 2, 3]
    assert list(epochs["warmup"]) == [True, False, False]
    assert (epochs["samples"] == 64).all()
    assert (epochs["run_s"] >= epochs["train_s"]).all() and (epochs["run_s"] >= epochs["data_s"]).all()
    assert (epochs["samples_per_s"] - epochs["samples"] / epochs["run_s"]).abs().max() < 1e-6
    assert summary["measured_epochs"] == [2, 3] and summary["warmup_excluded"] is True
    assert summary["mean_run_s"] == pytest.approx(epochs["run_s"][1:].mean())
    assert summary["strategy"] == "single" and summary["world_size"] == 1 and summary["global_batch"] == 16
    assert summary["final"]["val_acc"] == pytest.approx(epochs["val_acc"].iloc[-1])
    assert (folder / "config.yaml").read_text().count("image_size: 16") == 1
    state = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3
    assert (folder / "checkpoints" / "best.pt").exists()
    assert not list(folder.rglob("*.tmp"))


def _final_params(folder):
    return torch.load(folder / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_resume_continues_to_identical_parameters(hpml, tmp_path, monkeypatch):
    # Bitwise equality is a CPU promise: cuDNN picks nondeterministic kernels on a GPU.
    schedule = [*TINY, "trainer.epochs=3", "scheduler=constant", "device=cpu"]
    monkeypatch.setenv("HPML_RUN_ID", "whole")
    assert hpml("train", *schedule).rc == 0
    monkeypatch.setenv("HPML_RUN_ID", "part")
    assert hpml("train", *TINY, "trainer.epochs=1", "scheduler=constant", "device=cpu").rc == 0
    monkeypatch.delenv("HPML_RUN_ID")
    part = tmp_path / "runs" / "part"
    result = hpml("train", f"resume={part}", "trainer.epochs=3")  # model/data overrides come from the run
    assert result.rc == 0, result.err
    whole_state, part_state = _final_params(tmp_path / "runs" / "whole"), _final_params(part)
    for key, value in whole_state.items():
        assert torch.equal(value, part_state[key]), key
    epochs, _ = read_run(part)
    assert list(epochs["epoch"]) == [1, 2, 3]


def test_list_models_datasets_strategies_optimizers(hpml):
    models = hpml("list", "models").out
    assert "resnet18" in models and "11,689,512" in models and "classification" in models
    for what, expected in (("datasets", "shapes"), ("strategies", "ddp"), ("optimizers", "adamw")):
        assert expected in hpml("list", what).out


def test_help_texts(hpml, capsys):
    assert "hpml train" in hpml("--help").out
    result = hpml("train", "--help")
    assert result.rc == 0 and "Config groups" in result.out
    assert "strategy: ddp, dp, fsdp, pipe, single" in result.out and "_schema" not in result.out
    assert "epochs: 4" in result.out  # the default config, every key


def test_cfg_job_prints_config_without_running(hpml, tmp_path):
    result = hpml("train", "--cfg", "job", "model=resnet50")
    assert result.rc == 0 and "depth: 50" in result.out
    assert not (tmp_path / "runs").exists()


def test_multirun_sweeps_into_one_folder_per_job(hpml, tmp_path):
    result = hpml("train", "-m", *[a for a in TINY if not a.startswith("trainer.epochs")], "trainer.epochs=1",
                  "dataset.batch_size=16,32")
    assert result.rc == 0, result.err
    sweeps = list((tmp_path / "runs" / "multirun").iterdir())
    assert len(sweeps) == 1
    summaries = sorted(json.loads(p.read_text())["batch_per_rank"] for p in sweeps[0].glob("*/summary.json"))
    assert summaries == [16, 32]


def test_ddp_at_world_size_one_matches_single(hpml, tmp_path, monkeypatch):
    for strategy in ("single", "ddp"):
        monkeypatch.setenv("HPML_RUN_ID", strategy)
        result = hpml("train", *TINY, f"strategy={strategy}")
        assert result.rc == 0, result.err
    single, ddp = (_final_params(tmp_path / "runs" / s) for s in ("single", "ddp"))
    for key in single:
        torch.testing.assert_close(single[key], ddp[key], rtol=1e-5, atol=1e-6)
    assert json.loads((tmp_path / "runs" / "ddp" / "summary.json").read_text())["strategy"] == "ddp"


@pytest.mark.parametrize("knobs", [
    ["trainer.precision=bf16"],
    ["trainer.channels_last=true"],
    ["trainer.grad_accum_steps=2", "trainer.grad_clip_norm=1.0"],
    ["optimizer=sgd", "scheduler=constant", "trainer.deterministic=true"],
    ["model.freeze_backbone=true"],
    ["dataset=synthetic", "dataset.image_size=16", "dataset.num_train=32"],
])
def test_training_knobs_run(hpml, tmp_path, knobs):
    result = hpml("train", *TINY, "trainer.epochs=1", *knobs)
    assert result.rc == 0, result.err
    epochs, summary = read_run(only_run_folder(tmp_path))
    assert epochs["train_loss"].notna().all()
    if "model.freeze_backbone=true" in knobs:
        assert summary["trainable_parameters"] == 512 * 4 + 4
