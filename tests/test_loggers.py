"""TensorBoard and W&B (offline): the logged values are read back and compared with epochs.csv."""
import pandas as pd
import pytest
from conftest import TINY, only_run_folder
from wandb_records import history, read_records, run_record, summary

# 64 samples / batch 16 = 4 steps per epoch; a per-step point every 2 steps.
LOGGED = [*TINY, "model=mlp", "logger.log_every_n_steps=2", "trainer.checkpoint_every=1"]


def _tb_events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return events


def test_tensorboard_scalars_and_hparams_read_back(hpml, tmp_path):
    assert hpml("train", *LOGGED, "logger=tensorboard").rc == 0
    run = only_run_folder(tmp_path)
    epochs = pd.read_csv(run / "epochs.csv")
    events = _tb_events(run / "tb")
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "train/step_s", "train/samples_per_s", "epoch/run_s", "epoch/val_acc"} <= set(scalars)
    # 2 epochs x 4 steps, every 2nd step: global steps 2, 4, 6, 8
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6, 8]
    assert all(e.value > 0 for e in events.Scalars("train/samples_per_s"))
    run_s = {e.step: e.value for e in events.Scalars("epoch/run_s")}
    assert run_s == pytest.approx(dict(zip(epochs["epoch"], epochs["run_s"])), rel=1e-5)
    val_acc = [e.value for e in events.Scalars("epoch/val_acc")]
    assert val_acc == pytest.approx(list(epochs["val_acc"]), rel=1e-5)
    # the config as hparams (the HParams plugin's session start info)
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    starts = [plugin_data_pb2.HParamsPluginData.FromString(c).session_start_info for c in content.values()]
    hparams = {k: v for s in starts for k, v in s.hparams.items()}
    assert hparams["model.name"].string_value == "mlp" and hparams["dataset.batch_size"].number_value == 16


def _offline_runs(run):
    return sorted((run / "wandb").glob("offline-run-*"))


def test_wandb_offline_values_read_back_and_resume_continues_the_same_run(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no netrc login: auto -> offline
    result = hpml("train", *LOGGED, "logger=wandb", "logger.tags=[mine]")
    assert result.rc == 0, result.err
    assert "W&B offline" in result.out and "wandb sync" in result.out
    run = only_run_folder(tmp_path)
    epochs = pd.read_csv(run / "epochs.csv")
    (first,) = _offline_runs(run)
    records = read_records(next(first.glob("run-*.wandb")))
    info = run_record(records)
    assert set(info.tags) >= {"single", "world_size=1", "mine"}
    config = {u.key: u.value_json for u in info.config.update}
    assert '"mlp"' in config["model"] or "mlp" in config["model"]
    rows = history(records)
    steps = [r["global_step"] for r in rows if "train/loss" in r]
    assert steps == [2, 4, 6, 8]
    epoch_rows = [r for r in rows if "epoch/run_s" in r]
    assert [r["epoch/run_s"] for r in epoch_rows] == pytest.approx(list(epochs["run_s"]))
    assert [r["epoch/val_acc"] for r in epoch_rows] == pytest.approx(list(epochs["val_acc"]))
    final = summary(records)
    assert final["median_run_s"] == pytest.approx(epochs["run_s"].iloc[1])  # epoch 1 is warm-up
    assert any(k.startswith("epochs_table") for k in final)  # the epoch table, logged as a W&B table
    assert list(first.glob("files/media/table/epochs_table*.table.json"))

    # resume= continues the same W&B run id, never a new one
    result = hpml("train", f"resume={run}", "trainer.epochs=3")
    assert result.rc == 0, result.err
    runs = _offline_runs(run)
    assert len(runs) == 2
    ids = {run_record(read_records(next(r.glob("run-*.wandb")))).run_id for r in runs}
    assert ids == {info.run_id}
    resumed_rows = history(read_records(next(runs[1].glob("run-*.wandb"))))
    assert [r["epoch"] for r in resumed_rows if "epoch/run_s" in r] == [3]


def test_wandb_mode_auto_follows_credentials(tmp_path, monkeypatch):
    from hpml_bench.callbacks.loggers import resolve_wandb_mode

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert resolve_wandb_mode("auto") == "online"
    (tmp_path / ".netrc").unlink()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")  # the user's explicit setting wins
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_bad_logger_settings_are_one_line_errors(hpml):
    result = hpml("train", *TINY, "logger=wandb", "logger.wandb_mode=sometimes")
    assert result.rc == 2 and "logger.wandb_mode=sometimes" in result.err and len(result.err.strip().splitlines()) == 1
