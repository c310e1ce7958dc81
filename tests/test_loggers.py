"""TensorBoard and W&B (offline) write where the run folder says."""
from conftest import TINY, only_run_folder


def test_tensorboard_writes_event_files(hpml, tmp_path):
    assert hpml("train", *TINY, "trainer.epochs=1", "logger=tensorboard").rc == 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(only_run_folder(tmp_path) / "tb"))
    events.Reload()
    assert {"run_s", "data_s", "train_s", "val_acc"} <= set(events.Tags()["scalars"])


def test_wandb_offline_run_is_written_into_the_run_folder(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = hpml("train", *TINY, "trainer.epochs=1", "logger=wandb")
    assert result.rc == 0, result.err
    offline = list((only_run_folder(tmp_path) / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and list(offline[0].glob("*.wandb"))
