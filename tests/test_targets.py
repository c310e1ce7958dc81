"""Time to target, mid-epoch validation, early stopping and trainer.monitor, through the real CLI
on tiny CPU runs (an MLP on 16 px shapes, 4 steps per epoch), plus the goal logic on its own."""
import json
import time

import pandas as pd
import pytest
import torch
from conftest import TINY, only_run_folder, read_run

from hpml_bench.tasks import TASKS
from hpml_bench.train.targets import EarlyStopConfig, Goals, GoalsConfig, TargetConfig

RUN = [*TINY, "model=mlp", "device=cpu", "trainer.epochs=3", "scheduler=constant"]


def _goals(**kw) -> Goals:
    return Goals(GoalsConfig(**kw), "val_acc")


def _epoch(goals: Goals, epoch: int, **scores) -> bool:
    return goals.see_epoch({"epoch": epoch, "run_s": 1.0, "val_s": 0.25, **scores})


def test_a_target_is_met_at_its_first_validation_with_the_clock_of_the_epochs_before():
    goals = _goals(target=TargetConfig("val_loss", 0.5))
    assert goals.target.text == "val_loss<=0.5"  # a loss: lower is better
    assert not _epoch(goals, 1, val_loss=0.9)
    goals.start_epoch()
    assert not goals.see({"val_loss": 0.5, "val_s": 0.1}, epoch=1, step=2, steps=4, elapsed_s=goals.clock_s + 0.7)  # mid-epoch
    assert not _epoch(goals, 2, val_loss=0.4)  # met again: the first time counts
    summary = goals.summary()
    assert summary["time_to_target_s"] == pytest.approx(1.25 + 0.7) and summary["epochs_to_target"] == 1.5
    assert summary["target_reached"] is True and summary["stop_reason"] is None
    assert TargetConfig("val_acc", 0.94).text == "val_acc>=0.94" and TargetConfig("val_loss", 2, "max").text == "val_loss>=2"


def test_a_target_never_reached_says_so():
    goals = _goals(target=TargetConfig("val_acc", 0.99), objective="time_to_target")
    _epoch(goals, 1, val_acc=0.5)
    _epoch(goals, 2, val_acc=0.7)
    summary = goals.summary()
    assert summary["target_reached"] is False and summary["time_to_target_s"] is None
    assert summary["epochs_to_target"] is None and summary["target_best"] == 0.7
    assert summary["objective"] == {"name": "time_to_target_s (val_acc>=0.99)", "direction": "minimize", "value": None}
    no_target = _goals().summary()
    assert no_target["target"] is None and no_target["target_reached"] is None


def test_early_stop_counts_validations_without_an_improvement_larger_than_min_delta():
    goals = _goals(early_stop=EarlyStopConfig(patience=2, monitor="val_loss", min_delta=0.1))
    losses = [1.0, 0.95, 0.85, 0.80, 0.78]  # 0.95: not better by 0.1; 0.85: better than 1.0 - 0.1; then two more
    stops = [_epoch(goals, e + 1, val_loss=v) for e, v in enumerate(losses)]
    assert stops == [False, False, False, False, True]
    assert goals.stop_reason == "early_stop" and goals.es_best == 0.85 and goals.es_bad == 2
    # the patience counter is in the checkpoint, and a resumed run judges the same validations again
    state = goals.state_dict(mid_epoch=False)
    assert state["patience_count"] == 2
    again = _goals(early_stop=EarlyStopConfig(patience=3, monitor="val_loss", min_delta=0.1))
    again.load_state_dict(state, history=[])
    assert (again.es_best, again.es_bad, again.stop_reason) == (0.85, 2, None)
    assert again.clock_s == pytest.approx(5 * 1.25)
    assert _epoch(again, 6, val_loss=0.77)  # the third validation without improvement


def test_a_mid_epoch_checkpoint_carries_the_epochs_seconds_so_far():
    goals = _goals()
    _epoch(goals, 1, val_acc=0.5)
    goals.start_epoch()
    time.sleep(0.05)
    state = goals.state_dict(mid_epoch=True)
    assert state["clock_s"] >= 1.25 + 0.05
    resumed = _goals()
    resumed.load_state_dict(state, history=[])
    assert resumed.clock_s == state["clock_s"]


def test_a_checkpoint_from_before_goals_rebuilds_them_from_its_history():
    goals = _goals(target=TargetConfig("val_acc", 0.6))
    history = [{"epoch": 1, "run_s": 2.0, "val_s": 0.5, "val_acc": 0.5}, {"epoch": 2, "run_s": 2.0, "val_s": 0.5, "val_acc": 0.6}]
    goals.load_state_dict(None, history)
    assert goals.summary()["time_to_target_s"] == 5.0 and goals.summary()["epochs_to_target"] == 2


def test_each_task_declares_the_metrics_it_logs():
    for name in TASKS.names():
        task = TASKS.get(name)(3)
        assert sorted(task.metrics().keys()) == sorted(task.metric_names), name
    assert TASKS.get("segmentation").logged_metrics()[:4] == ["val_loss", "val_miou", "val_dice", "val_pixel_acc"]


def test_a_target_on_the_ema_weights_needs_an_ema():
    from hpml_bench.errors import HpmlError
    from hpml_bench.train.config import compose_train, to_train_config

    target = ["trainer.target.metric=val_ema_acc", "trainer.target.value=0.9"]
    assert to_train_config(compose_train([*target, "trainer.ema_decay=0.99"])).trainer.target.metric == "val_ema_acc"
    with pytest.raises(HpmlError, match="trainer.target.metric=val_ema_acc is not a metric this run logs"):
        to_train_config(compose_train(target))
    speed = to_train_config(compose_train(["experiment=cifar10_speed"]))  # the recipe states its target
    assert (speed.trainer.target.metric, speed.trainer.target.value) == ("val_ema_acc", 0.94)


@pytest.mark.parametrize("args, message", [
    (["trainer.target.metric=val_accc", "trainer.target.value=0.9"],
     "trainer.target.metric=val_accc is not a metric this run logs (did you mean 'val_acc'?)"),
    (["trainer.target.metric=val_acc"], "a target needs both trainer.target.metric and trainer.target.value"),
    (["trainer.stop_at_target=true"], "trainer.stop_at_target=true needs a target"),
    (["trainer.monitor=val_miou"], "trainer.monitor=val_miou is not a metric this run logs"),
    (["trainer.early_stop.patience=0"], "trainer.early_stop.patience=0 must be 1 or more"),
    (["trainer.early_stop.mode=up"], "trainer.early_stop.mode=up: use auto, max or min"),
    (["trainer.val_every_steps=3", "trainer.grad_accum_steps=2"], "trainer.val_every_steps=3 must be a positive multiple"),
    (["trainer.objective=fastest"], "trainer.objective=fastest: use monitor or time_to_target"),
])
def test_goal_mistakes_are_one_line_errors_before_anything_runs(hpml, tmp_path, args, message):
    result = hpml("train", *RUN, *args)
    assert result.rc == 2 and message in result.err and len(result.err.strip().splitlines()) == 1, result.err
    assert not (tmp_path / "runs").exists()


def test_time_to_target_is_the_epochs_run_s_and_val_s_up_to_the_validation_that_met_it(hpml, tmp_path, monkeypatch):
    # A target out of reach first: the run says so, and its curve gives a target that is met later.
    monkeypatch.setenv("HPML_RUN_ID", "never")
    result = hpml("train", *RUN, "trainer.target.metric=val_loss", "trainer.target.value=0.001")
    assert result.rc == 0, result.err
    assert "target val_loss<=0.001: not reached in 3 epochs" in result.out
    epochs, summary = read_run(tmp_path / "runs" / "never")
    assert summary["target"] == "val_loss<=0.001" and summary["target_reached"] is False
    assert summary["time_to_target_s"] is None and summary["epochs_to_target"] is None
    assert summary["target_best"] == pytest.approx(epochs["val_loss"].min())
    losses = list(epochs["val_loss"])
    assert losses[1] < losses[0], losses  # the tiny run learns: epoch 2 is the first under epoch 2's loss
    value = losses[1] + 1e-6

    monkeypatch.setenv("HPML_RUN_ID", "reached")
    result = hpml("train", *RUN, "trainer.target.metric=val_loss", f"trainer.target.value={value}")
    assert result.rc == 0, result.err
    epochs, summary = read_run(tmp_path / "runs" / "reached")
    met = next(i for i, loss in enumerate(epochs["val_loss"]) if loss <= value)  # from epochs.csv alone
    assert summary["epochs_to_target"] == met + 1 == 2 and summary["target_reached"] is True
    expected = (epochs["run_s"] + epochs["val_s"])[: met + 1].sum()
    assert summary["time_to_target_s"] == pytest.approx(expected, rel=1e-9)
    assert f"time to target val_loss<={value:g}: {expected:.2f} s" in result.out  # the table's footer
    assert len(epochs) == 3 and summary["stop_reason"] is None  # no stop_at_target: trains on
    validations = pd.read_csv(tmp_path / "runs" / "reached" / "validations.csv")
    assert list(validations["epochs"]) == [1, 2, 3]
    assert list(validations["elapsed_s"]) == pytest.approx(list((epochs["run_s"] + epochs["val_s"]).cumsum()))


def test_mid_epoch_validation_leaves_training_unchanged_is_counted_in_val_s_and_can_end_the_run(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("HPML_RUN_ID", "plain")
    assert hpml("train", *RUN).rc == 0
    monkeypatch.setenv("HPML_RUN_ID", "often")
    result = hpml("train", *RUN, "trainer.val_every_steps=2")
    assert result.rc == 0, result.err
    plain, _ = read_run(tmp_path / "runs" / "plain")
    often, summary = read_run(tmp_path / "runs" / "often")
    # the validations in between draw no random numbers from training's stream: the same run
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "samples"):
        assert list(often[column]) == list(plain[column]), column
    weights = [torch.load(tmp_path / "runs" / r / "checkpoints" / "last.pt", weights_only=True)["model"] for r in ("plain", "often")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    validations = pd.read_csv(tmp_path / "runs" / "often" / "validations.csv")
    assert list(validations["epochs"]) == [0.5, 1, 1.5, 2, 2.5, 3] and summary["validations"] == 6
    # epoch ends: the clock is epochs.csv's run_s + val_s; in between, a point inside the epoch
    ends = validations[validations["epochs"] % 1 == 0]
    assert list(ends["elapsed_s"]) == pytest.approx(list((often["run_s"] + often["val_s"]).cumsum()))
    before = [0.0, *(often["run_s"] + often["val_s"]).cumsum()[:-1]]
    mids = validations[validations["epochs"] % 1 != 0]
    assert all(b < t < e for b, t, e in zip(before, mids["elapsed_s"], ends["elapsed_s"]))
    # an epoch's val_s is the seconds of both its validations (none is left in run_s)
    for epoch, val_s in zip(often["epoch"], often["val_s"]):
        assert val_s == pytest.approx(validations[(validations["epochs"] > epoch - 1) & (validations["epochs"] <= epoch)]["val_s"].sum())

    # stop_at_target: a target first met at a mid-epoch point of that curve ends the run there
    curve = validations.reset_index(drop=True)
    losses = list(curve["val_loss"])
    # the first mid-epoch point after epoch 1 that beats every validation before it
    k = next(i for i in range(2, len(losses)) if curve["epochs"][i] % 1 and losses[i] < min(losses[:i]))
    value = losses[k] + 1e-7
    monkeypatch.setenv("HPML_RUN_ID", "stop")
    result = hpml("train", *RUN, "trainer.val_every_steps=2", "trainer.stop_at_target=true",
                  "trainer.target.metric=val_loss", f"trainer.target.value={value}")
    assert result.rc == 0, result.err
    folder = tmp_path / "runs" / "stop"
    epochs, summary = read_run(folder)
    assert summary["stop_reason"] == "target" and summary["epochs_to_target"] == curve["epochs"][k]
    last = int(curve["epochs"][k]) + 1  # the epoch it stopped in, after half of it
    assert list(epochs["epoch"]) == list(range(1, last + 1)) and epochs["samples"].iloc[-1] == 32
    assert epochs["val_loss"].iloc[-1] == pytest.approx(losses[k])  # the validation that met it, not another
    total = (epochs["run_s"] + epochs["val_s"]).sum()
    assert total - epochs["run_s"].iloc[-1] - epochs["val_s"].iloc[-1] < summary["time_to_target_s"] <= total
    state = torch.load(folder / "checkpoints" / "last.pt", weights_only=False)
    assert state["goals"]["validations"][-1]["epochs"] == curve["epochs"][k]
    assert "stopped at the target" in result.out


def _stop_epoch(values, patience, min_delta):
    """The epoch early stopping should end at, replayed from epochs.csv's values (val_acc: higher is better)."""
    best, bad = None, 0
    for epoch, value in enumerate(values, 1):
        best, bad = (value, 0) if best is None or value > best + min_delta else (best, bad + 1)
        if bad >= patience:
            return epoch
    return None


# val_acc cannot improve by 0.5; best.pt follows a training metric meanwhile (lower is better)
EARLY = ["trainer.early_stop.patience=2", "trainer.early_stop.min_delta=0.5", "trainer.early_stop.monitor=val_acc",
         "trainer.monitor=train_loss"]


def test_early_stop_ends_at_the_right_epoch_also_after_a_resume(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("HPML_RUN_ID", "whole")
    result = hpml("train", *RUN, "trainer.epochs=6", *EARLY)
    assert result.rc == 0, result.err
    epochs, summary = read_run(tmp_path / "runs" / "whole")
    assert len(epochs) == _stop_epoch(list(epochs["val_acc"]), 2, 0.5) == 3
    assert summary["stop_reason"] == "early_stop" and summary["early_stop"]["patience_count"] == 2
    assert "stopped early: val_acc did not improve by more than 0.5 in 2 validations" in result.out
    state = torch.load(tmp_path / "runs" / "whole" / "checkpoints" / "last.pt", weights_only=False)
    assert state["epoch"] == 3 and state["goals"]["patience_count"] == 2  # the run's end is checkpointed
    best = torch.load(tmp_path / "runs" / "whole" / "checkpoints" / "best.pt", weights_only=True)
    assert best["train_loss"] == pytest.approx(epochs["train_loss"].min())

    # 2 epochs (one validation without improvement), then resumed: the counter goes on from 1
    monkeypatch.setenv("HPML_RUN_ID", "part")
    assert hpml("train", *RUN, "trainer.epochs=2", *EARLY).rc == 0
    part = tmp_path / "runs" / "part"
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["goals"]["patience_count"] == 1
    monkeypatch.delenv("HPML_RUN_ID")
    result = hpml("train", f"resume={part}", "trainer.epochs=6")
    assert result.rc == 0, result.err
    resumed, summary = read_run(part)
    assert list(resumed["epoch"]) == [1, 2, 3] and summary["stop_reason"] == "early_stop"
    assert list(resumed["val_acc"]) == list(epochs["val_acc"])


def test_best_pt_follows_trainer_monitor_and_its_mode(hpml, tmp_path, monkeypatch):
    monkeypatch.setenv("HPML_RUN_ID", "highest_loss")  # a perverse choice, so it differs from the default
    result = hpml("train", *RUN, "trainer.monitor=val_loss", "trainer.monitor_mode=max")
    assert result.rc == 0, result.err
    folder = tmp_path / "runs" / "highest_loss"
    epochs, summary = read_run(folder)
    best = torch.load(folder / "checkpoints" / "best.pt", weights_only=True)
    worst = int(epochs["val_loss"].idxmax())
    assert best["val_loss"] == pytest.approx(epochs["val_loss"].max()) and best["epoch"] == worst + 1
    assert summary["monitor"] == "val_loss" and summary["monitor_mode"] == "max"
    assert summary["monitor_best"] == pytest.approx(epochs["val_loss"].max())
    assert summary["objective"]["name"] == "best val_loss" and summary["objective"]["direction"] == "maximize"
    assert "┃ val_loss ┃" in result.out  # the table's last column is the monitored metric


def test_the_loggers_get_time_to_target(hpml, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from wandb_records import read_records, summary

    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = hpml("train", *RUN, "trainer.epochs=2", "logger=all", "trainer.target.metric=val_loss",
                  "trainer.target.value=100", "trainer.val_every_steps=2")
    assert result.rc == 0, result.err
    run = only_run_folder(tmp_path)
    ttt = json.loads((run / "summary.json").read_text())["time_to_target_s"]
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    assert events.Scalars("hparam/time_to_target_s")[0].value == pytest.approx(ttt, rel=1e-5)
    assert events.Scalars("hparam/epochs_to_target")[0].value == 0.5
    records = read_records(next((run / "wandb").glob("offline-run-*/run-*.wandb")))
    final = summary(records)
    assert final["time_to_target_s"] == pytest.approx(ttt) and final["target"] == "val_loss<=100"
    assert final["target_reached"] is True


@pytest.mark.dist
def test_two_ddp_ranks_agree_to_stop_at_a_mid_epoch_target(hpml, tmp_path):
    # gloo, 2 ranks x 16 per batch over 128 samples: 4 steps per epoch, a validation after 2
    result = hpml("train", "model=mlp", "dataset=synthetic", "dataset.image_size=8", "dataset.num_train=128",
                  "dataset.num_val=32", "dataset.batch_size=16", "trainer.epochs=3", "trainer.progress=never",
                  "strategy=ddp", "strategy.nproc_per_node=2", "strategy.backend=gloo", "trainer.val_every_steps=2",
                  "trainer.target.metric=val_loss", "trainer.target.value=100", "trainer.stop_at_target=true")
    assert result.rc == 0, result.err
    folder = only_run_folder(tmp_path)
    epochs, summary = read_run(folder)
    assert summary["world_size"] == 2 and summary["stop_reason"] == "target" and summary["epochs_to_target"] == 0.5
    assert list(epochs["samples"]) == [64]  # half an epoch on each rank
    assert summary["time_to_target_s"] <= (epochs["run_s"] + epochs["val_s"]).sum()
    assert sorted(pd.read_csv(folder / "ranks.csv")["rank"]) == [0, 1]
